"""Audit evidence: what proves what a worker was asked and what it answered.

The client alone can assemble it, and only for its own requests: the sealed
request envelope as the worker got it, the request's content key (fresh per
request, so disclosing it opens that one envelope and nothing else), the
sealed answer chunks as they came, and the worker's signed final receipt.
Anyone holding it checks, without trusting the client:

- the receipt is the worker's (its signature, and the cell form TVM checks);
- the envelope is the one the receipt was signed for (its hash);
- the content key opens it: the prompt, the sampling and the response key;
- the response key opens the answer chunks, whose digest and count are the
  receipt's: the answer is what the worker sealed, whole.

Verifier workers (listed on the root) open evidence sealed to them, score the
answer themselves and sign a verdict (DESIGN §11). Evidence carries plaintext
once opened: it only ever travels sealed to attested workers.
"""

from __future__ import annotations

import msgspec

from ..crypto.answer_stream import AnswerOpener
from ..crypto.errors import CryptoError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..crypto.sealing import open_disclosed
from ..inference import AnswerChunk, GenerationRequest, chunk_decoder, payload_decoder


class EvidenceError(ValueError):
    """Evidence that does not hold together."""


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    network: str
    envelope: bytes  # the sealed request, as the worker received it
    content_key: bytes  # that request's content key, disclosed
    sealed: list[bytes]  # the sealed answer chunks in order; the last is the final one
    receipt: bytes  # the worker's signed final receipt


class VerdictTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What a verifier signs if it finds the answer false (crypto/verdict_cell.py)."""

    network_id: int
    stake: str  # the audited worker's stake contract, raw address
    slash_bp: int
    nonce: int


class VerifyRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a request of kind "verify" (`GenerationRequest.evidence`)."""

    evidence: bytes  # packed Evidence (its hash is the verdict's evidence hash)
    terms: VerdictTerms


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    request: GenerationRequest
    answer: str
    receipt: Receipt


_encoder = msgspec.msgpack.Encoder()
_evidence = msgspec.msgpack.Decoder(Evidence)
_verify = msgspec.msgpack.Decoder(VerifyRequest)


def pack(value: Evidence | VerifyRequest) -> bytes:
    return _encoder.encode(value)


def unpack_verify(data: bytes) -> tuple[VerifyRequest, Evidence]:
    try:
        request = _verify.decode(data)
        return request, _evidence.decode(request.evidence)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise EvidenceError(f"malformed evidence: {exc}") from exc


def evidence_hash(packed_evidence: bytes) -> bytes:
    return sha256(packed_evidence)


def open_evidence(evidence: Evidence, network: str) -> Opened:
    """Check evidence through and through (module doc); the request and answer it proves."""
    if evidence.network != network:
        raise EvidenceError(f"evidence is for network {evidence.network!r}")
    try:
        receipt = verify_receipt(evidence.receipt, network)
    except CryptoError as exc:
        raise EvidenceError(f"the receipt does not verify: {exc}") from exc
    if not receipt.final:
        raise EvidenceError("evidence needs the final receipt")
    if sha256(evidence.envelope) != receipt.request_hash:
        raise EvidenceError("the envelope is not the one the receipt was signed for")
    try:
        request_id, plaintext = open_disclosed(evidence.envelope, evidence.content_key, network)
        payload = payload_decoder.decode(plaintext)
    except (CryptoError, msgspec.MsgspecError, ValueError) as exc:
        raise EvidenceError(f"the request does not open: {exc}") from exc
    if request_id != receipt.request_id or payload.request_id != request_id:
        raise EvidenceError("the envelope is for another request")
    opener = AnswerOpener(payload.response_key, request_id)
    chunks: list[AnswerChunk] = []
    last = len(evidence.sealed) - 1
    try:
        for index, sealed in enumerate(evidence.sealed):
            chunks.append(chunk_decoder.decode(opener.open(index, sealed, final=index == last)))
    except (CryptoError, msgspec.MsgspecError, ValueError) as exc:
        raise EvidenceError(f"the answer does not open: {exc}") from exc
    if opener.digest() != receipt.answer_hash or len(chunks) != receipt.answer_chunks:
        raise EvidenceError("the answer is not the one the receipt was signed for")
    answer = "".join(chunk.text for chunk in chunks)
    return Opened(request=payload.request, answer=answer, receipt=receipt)
