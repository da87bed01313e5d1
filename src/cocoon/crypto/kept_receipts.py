"""A worker's own copy of each receipt it signed, kept small, and signed again on demand.

A worker keeps every receipt it is owed for, to invoice a proxy that did not
pay. Kept whole, a receipt is 500 bytes: msgspec writes every field's name
into the body (half of its 400 bytes), and the cell signature adds 64. On a
book of 1 KiB pages each request's row filled half a page: written six to a
commit in a loop, a row took 16.7 µs and a commit 20 pages of log; with the
values alone (156 bytes), 12.1 µs and 16 pages, and the book file is half the
size (issue 18: payments off the hot path).

So the row keeps the receipt's values alone, in field order, without those
the row holds already (network and request id). Signing is deterministic
(Ed25519), and the body is the msgspec encoding of the same values, so the
receipt signed again is the one the worker sent: the same body, hence the same
cell and cell signature. A body signature, which old readers check and nobody
compares, is made again for every invoice.
"""

from __future__ import annotations

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import ReceiptError
from .receipts import Receipt, sign_receipt

# Bumped if the fields kept change: a kept copy must make the body it was cut from.
VERSION = 1
KEPT_FIELDS = tuple(f for f in Receipt.__struct_fields__ if f not in ("network", "request_id"))
# They are all but the first two, so a receipt's values are cut in one call.
if Receipt.__struct_fields__[2:] != KEPT_FIELDS:
    raise RuntimeError("a kept receipt leaves out the first two fields of a Receipt only")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_MSGPACK_MAP = range(0x80, 0x90)  # a whole SignedReceipt (a fixmap): kept before version 1


def keep_receipt(receipt: Receipt) -> bytes:
    """What a worker keeps of a receipt it signed (about 160 bytes)."""
    return _encoder.encode([VERSION, *msgspec.structs.astuple(receipt)[2:]])


def sign_kept_receipt(key: Ed25519PrivateKey, network: str, request_id: str, kept: bytes) -> bytes:
    """The signed receipt (SignedReceipt msgpack) that `kept` was cut from, signed again
    by `key`; a receipt kept whole (books written before) as it is. ReceiptError if
    `kept` is not one, or another key signed it."""
    if kept and kept[0] in _MSGPACK_MAP:
        return kept
    try:
        version, *values = _decoder.decode(kept)
    except (msgspec.MsgspecError, ValueError, TypeError) as exc:
        raise ReceiptError(f"malformed kept receipt: {exc}") from exc
    if version != VERSION or len(values) != len(KEPT_FIELDS):
        raise ReceiptError(f"kept receipt of version {version!r}, {len(values)} fields")
    receipt = Receipt(
        network=network, request_id=request_id, **dict(zip(KEPT_FIELDS, values, strict=True))
    )
    if receipt.worker_key != key.public_key().public_bytes_raw():
        raise ReceiptError("the receipt was kept by another key")
    return sign_receipt(key, receipt, body_signature=True)
