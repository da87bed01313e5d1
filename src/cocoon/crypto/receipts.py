"""Usage receipts that a worker signs per request, and their verification.

A worker signs each receipt twice with its node key: the msgpack body under
DOMAIN_RECEIPT (what nodes of protocol 1.5 and before check), and the hash of
the receipt cell (:mod:`.receipt_cell`), which a stake contract can check. Two
receipts that differ for the same request and seq prove equivocation
(``stake.tolk``).

A receipt is verified by its cell signature alone. The cell holds the sha256 of
the exact body beside the network, the request key and the seq, so that one
signature proves all the body signature did, and every receipt accepted is one
that can be put on chain. Checking both cost the proxy two Ed25519 checks per
answer, 113 µs instead of 57 on the 2-core dev machine, a tenth of all the CPU
the nodes spend on a non-streamed answer at c=64 (issue 18). The body signature
is made only for a reader of protocol 1.5 or before (`Request.body_signature`,
set by the proxy), and is not read: bytes that differ from a receipt only
there are the same receipt (what is compared, stored or proven is the body and
its cell).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..recent import remember
from .errors import ReceiptError, SignatureError
from .receipt_cell import MAX_SEQ, receipt_cell_data, receipt_cell_hash
from .signing import DOMAIN_RECEIPT, ed25519_sign, ed25519_verify, sign, verify

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
    """An encoded `Receipt`, the worker's signature over exactly those bytes, and its
    signature over the receipt cell's hash (the form a stake contract checks)."""

    body: bytes
    signature: bytes
    cell_signature: bytes = b""


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


def sign_receipt(key: Ed25519PrivateKey, receipt: Receipt, *, body_signature: bool = True) -> bytes:
    """Encode and sign `receipt`; returns a msgpack SignedReceipt. The cell signature
    is always made; the one over the body (under DOMAIN_RECEIPT) only when
    `body_signature`, for a reader of protocol 1.5 or before (19 µs a receipt)."""
    if not 0 <= receipt.seq <= MAX_SEQ:
        raise ReceiptError(f"receipt seq {receipt.seq} does not fit uint64")
    body = _encoder.encode(receipt)
    signature = sign(key, DOMAIN_RECEIPT, receipt.network, body) if body_signature else b""
    cell_hash = receipt_cell_hash(receipt.network, receipt.request_id, receipt.seq, body)
    return _encoder.encode(SignedReceipt(body, signature, ed25519_sign(key, cell_hash)))


def decode_signed_receipt(data: bytes) -> tuple[SignedReceipt, Receipt]:
    """The signed envelope and the receipt in it, unchecked; ReceiptError if malformed."""
    # msgspec raises a bare UnicodeDecodeError (a ValueError) for bad UTF-8 strings.
    try:
        signed = _signed_decoder.decode(data)
        return signed, _receipt_decoder.decode(signed.body)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise ReceiptError(f"malformed receipt: {exc}") from exc


def verify_receipt(
    data: bytes,
    network: str,
    worker_key: bytes | None = None,
    *,
    signature: bool = True,
    body_signature: bool = False,
) -> Receipt:
    """Decode and check a signed receipt; ReceiptError on any fault.

    `signature=False` checks everything but the signature, for a reader that
    knows by other means who made these bytes (a MAC under a key it shares
    with the worker).

    The signature checked is the one over the receipt cell, which covers the
    exact body received (its hash), so a receipt accepted here can always be
    used as evidence on chain (a worker that leaves out or spoils its cell
    signature is refused). `body_signature`: check the signature over the body
    too where the worker made one, as nodes of protocol 1.5 and before did.
    """
    signed, receipt = decode_signed_receipt(data)
    if receipt.network != network:
        raise ReceiptError(f"receipt is for network {receipt.network!r}")
    if worker_key is not None and receipt.worker_key != worker_key:
        raise ReceiptError("receipt is signed by another worker")
    try:
        # Verified over the exact bytes received, never a re-encoding of them.
        if signature and body_signature and signed.signature:
            verify(receipt.worker_key, DOMAIN_RECEIPT, network, signed.body, signed.signature)
    except SignatureError as exc:
        raise ReceiptError("bad receipt signature") from exc
    _check_fields(receipt)
    if signature and not _cell_signature_valid(signed, receipt):
        raise ReceiptError("bad receipt cell signature")
    return receipt


def _cell_signature_valid(signed: SignedReceipt, receipt: Receipt) -> bool:
    if receipt.seq > MAX_SEQ or not isinstance(signed.cell_signature, bytes):
        return False
    cell_hash = receipt_cell_hash(receipt.network, receipt.request_id, receipt.seq, signed.body)
    return ed25519_verify(receipt.worker_key, signed.cell_signature, cell_hash)


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


class EquivocationProof(msgspec.Struct, frozen=True):
    """Two receipt cells one worker signed for the same network, request and seq with
    different bodies: what ``stake.tolk`` slashes for (``data_*`` are the 108 cell data
    bytes of :func:`~.receipt_cell.receipt_cell_data`)."""

    worker_key: bytes
    data_a: bytes
    signature_a: bytes
    data_b: bytes
    signature_b: bytes


def equivocation_proof(receipt_a: bytes, receipt_b: bytes) -> EquivocationProof:
    """Check that two signed receipts (SignedReceipt msgpack) prove equivocation and
    return the proof; ReceiptError says why they do not.

    Both must carry valid signatures by the same worker key, name the same network,
    request id and seq, and differ in their bodies."""
    signed_a, a = decode_signed_receipt(receipt_a)
    signed_b, b = decode_signed_receipt(receipt_b)
    if a.worker_key != b.worker_key:
        raise ReceiptError("the receipts are signed by different workers")
    if (a.network, a.request_id, a.seq) != (b.network, b.request_id, b.seq):
        raise ReceiptError("the receipts are for different networks, requests or seqs")
    if signed_a.body == signed_b.body:
        raise ReceiptError("the receipts have the same body: no equivocation")
    for data in (receipt_a, receipt_b):
        verify_receipt(data, a.network, a.worker_key)
    return EquivocationProof(
        worker_key=a.worker_key,
        data_a=receipt_cell_data(a.network, a.request_id, a.seq, signed_a.body),
        signature_a=signed_a.cell_signature,
        data_b=receipt_cell_data(b.network, b.request_id, b.seq, signed_b.body),
        signature_b=signed_b.cell_signature,
    )


class EquivocationWatch:
    """Remembers the receipts it is shown, per (worker, network, request, seq), and says
    when one conflicts with an earlier one: a proof to send to the worker's stake
    (``cocoon.chain.slashing.submit_equivocation``). Sans-IO and bounded: the oldest
    slots are forgotten past ``max_slots``.

    Feed it receipts already verified (:func:`verify_receipt`) from wherever they come:
    a proxy's own stream and the receipts in clients' reports, a client's and an
    auditor's."""

    def __init__(self, max_slots: int = 100_000) -> None:
        self.max_slots = max_slots
        self._slots: OrderedDict[tuple[bytes, str, str, int], tuple[bytes, bytes]] = OrderedDict()

    def observe(self, data: bytes, receipt: Receipt) -> tuple[bytes, bytes] | None:
        """``(earlier receipt, this receipt)`` if they prove equivocation, else None."""
        signed, _ = decode_signed_receipt(data)
        body_hash = hashlib.sha256(signed.body).digest()
        slot = (receipt.worker_key, receipt.network, receipt.request_id, receipt.seq)
        seen = self._slots.get(slot)
        if seen is None:
            remember(self._slots, slot, (body_hash, data), self.max_slots)
            return None
        self._slots.move_to_end(slot)
        if seen[0] == body_hash:
            return None
        return seen[1], data
