"""Usage receipts that a worker signs per request, and their verification."""

from __future__ import annotations

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import ReceiptError, SignatureError
from .signing import DOMAIN_RECEIPT, sign, verify

ED25519_KEY_LEN = 32
HASH_LEN = 32


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker served for one request, as far as `answer_chunks` chunks."""

    network: str
    request_id: str
    model: str
    worker_key: bytes  # raw Ed25519 public key of the signing worker
    prompt_tokens: int
    cached_prompt_tokens: int = 0
    completion_tokens: int
    reasoning_tokens: int = 0
    request_hash: bytes  # sha256 of the sealed envelope
    answer_hash: bytes  # AnswerSealer.digest() after `answer_chunks` chunks
    answer_chunks: int
    final: bool
    started_ms: int
    finished_ms: int
    seq: int  # partial receipts count up from 0; the final one comes last
    # The worker's price coefficient (thousandths) for this request: the
    # client checks it against its bound, the proxy bills with it.
    coefficient_milli: int = 1000


class SignedReceipt(msgspec.Struct, frozen=True):
    """An encoded `Receipt` and the worker's signature over exactly those bytes."""

    body: bytes
    signature: bytes


_encoder = msgspec.msgpack.Encoder()
_signed_decoder = msgspec.msgpack.Decoder(SignedReceipt)
_receipt_decoder = msgspec.msgpack.Decoder(Receipt)

_COUNTS = (
    "prompt_tokens",
    "cached_prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "answer_chunks",
    "started_ms",
    "finished_ms",
    "seq",
)


def sign_receipt(key: Ed25519PrivateKey, receipt: Receipt) -> bytes:
    """Encode and sign `receipt` under DOMAIN_RECEIPT; returns a msgpack SignedReceipt."""
    body = _encoder.encode(receipt)
    signature = sign(key, DOMAIN_RECEIPT, receipt.network, body)
    return _encoder.encode(SignedReceipt(body, signature))


def verify_receipt(
    data: bytes, network: str, worker_key: bytes | None = None, *, signature: bool = True
) -> Receipt:
    """Decode and check a signed receipt; ReceiptError on any fault.

    `signature=False` checks everything but the signature, for a reader that
    knows by other means who made these bytes (a MAC under a key it shares
    with the worker).
    """
    # msgspec raises a bare UnicodeDecodeError (a ValueError) for bad UTF-8 strings.
    try:
        signed = _signed_decoder.decode(data)
        receipt = _receipt_decoder.decode(signed.body)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise ReceiptError(f"malformed receipt: {exc}") from exc
    if receipt.network != network:
        raise ReceiptError(f"receipt is for network {receipt.network!r}")
    if worker_key is not None and receipt.worker_key != worker_key:
        raise ReceiptError("receipt is signed by another worker")
    try:
        # Verified over the exact bytes received, never a re-encoding of them.
        if signature:
            verify(receipt.worker_key, DOMAIN_RECEIPT, network, signed.body, signed.signature)
    except SignatureError as exc:
        raise ReceiptError("bad receipt signature") from exc
    _check_fields(receipt)
    return receipt


def _check_fields(receipt: Receipt) -> None:
    for name in _COUNTS:
        if getattr(receipt, name) < 0:
            raise ReceiptError(f"negative {name}")
    if receipt.finished_ms < receipt.started_ms:
        raise ReceiptError("receipt finishes before it starts")
    if len(receipt.request_hash) != HASH_LEN or len(receipt.answer_hash) != HASH_LEN:
        raise ReceiptError("receipt hashes must be 32 bytes")


def receipt_to_json(receipt: Receipt) -> dict[str, object]:
    """Return the receipt as a JSON-ready dict, bytes as hex."""
    return {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in msgspec.structs.asdict(receipt).items()
    }
