"""What the client holds of one request: the call as sealed, what it learns of the
answer, and the check of each receipt against that answer."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from ..config import ClientConfig
from ..crypto.errors import CryptoError, ReceiptError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..crypto.sealing import SealSessions, seal_request
from ..inference import GenerationRequest, SealedPayload
from ..pricing import Prices
from ..recent import remember
from ..wire.messages import Request
from .choosing import PLAIN, Selection
from .directory import VerifiedWorker
from .errors import ClientError

_payload_encoder = msgspec.msgpack.Encoder()
# How many recent calls (and answers) are kept for retries and lookups.
RECENT_REQUESTS = 4096
# And how much memory the recent calls may take together: a call keeps its sealed
# envelope and the request it was sealed from (about as large again), so 4,096
# calls of a 16 MiB body each would hold 128 GiB. Past the budget the oldest go
# first; a retry of a forgotten id is sealed afresh.
RECENT_CALLS_BYTES = 128 << 20


@dataclass
class SealedCall:
    """One request as sealed: kept so that a retry resends the very same envelope."""

    request: Request
    response_key: bytes
    candidates: dict[bytes, VerifiedWorker]
    # Digest of the request as the app sent it: a retry must be the same request.
    request_digest: bytes
    # What the app asked (kept so that another proxy can be asked with a fresh seal).
    generation: GenerationRequest | None = None
    selection: Selection = PLAIN
    # The envelope's content key: disclosed (for this request only) in audit evidence.
    content_key: bytes = b""
    created: float = field(default_factory=time.time)
    # sha256 of `request.sealed`, what receipts and the request's tag name: hashed
    # once, not again by each reader (3 KiB an envelope in `cocoon bench`).
    request_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.request_hash = sha256(self.request.sealed)


@dataclass
class AnswerResult:
    """What the client learned about one answer: who served it, and its receipt."""

    request_id: str
    worker: VerifiedWorker | None = None
    receipt: Receipt | None = None
    receipt_bytes: bytes | None = None
    # Until the gateway decides whether to audit the answer: what audit evidence
    # needs (audit/evidence.py), the sealed request and the sealed answer chunks.
    envelope: bytes = b""
    content_key: bytes = b""
    sealed: list[bytes] = field(default_factory=list)
    # What the answer cost so far (nanotons, from its latest paid receipt) and the
    # payment channel it was owed on: what the web app's wallet and evidence show.
    amount_nano: int | None = None
    channel: str = ""
    # The price list it was owed at (its root version and tier): a verifier recomputes.
    prices: Prices | None = None

    def forget_evidence(self) -> None:
        self.envelope, self.content_key, self.sealed = b"", b"", []


def track_answer(results: OrderedDict[str, AnswerResult], request_id: str) -> AnswerResult:
    """Start recording what is learned about one answer (worker, receipt), among the
    RECENT_REQUESTS newest."""
    return remember(results, request_id, AnswerResult(request_id), RECENT_REQUESTS)


def check_receipt(
    call: SealedCall,
    result: AnswerResult,
    data: bytes,
    answer_hash: bytes,
    answer_chunks: int,
    tagged: bool,
    config: ClientConfig,
) -> None:
    """Check a receipt against the answer as it stood when the receipt came.

    A receipt whose tag matched (`tagged`) was made by the worker that
    opened this request (only it and we hold the key): its signature, which
    the proxy checks, is checked here only when asked to.
    """
    signature = not tagged or config.check_receipt_signatures
    try:
        receipt = verify_receipt(data, config.network, signature=signature)
    except CryptoError as exc:
        raise ClientError("bad_receipt", f"receipt does not verify: {exc}") from exc
    worker = call.candidates.get(receipt.worker_key)
    problem = ""
    if worker is None:
        problem = "signed by a worker the request was not sealed to"
    elif receipt.request_id != call.request.request_id or receipt.request_hash != call.request_hash:
        problem = "for another request"
    elif receipt.answer_hash != answer_hash or receipt.answer_chunks != answer_chunks:
        problem = "does not match the answer received"
    elif not receipt.final and receipt.completion_tokens > answer_chunks:
        problem = "claims more tokens than chunks were delivered"
    elif receipt.coefficient_milli > call.request.max_coefficient_milli:
        problem = "states a price coefficient above the client's bound"
    elif result.receipt is not None and receipt.seq <= result.receipt.seq:
        problem = "replayed"
    elif result.worker is not None and result.worker is not worker:
        problem = "signed by another worker than the one that answered"
    if problem:
        raise ClientError("bad_receipt", f"receipt {problem}") from ReceiptError(problem)
    result.worker = worker
    result.receipt = receipt
    result.receipt_bytes = data


def seal_call(
    request_id: str,
    generation: GenerationRequest,
    chosen: Sequence[VerifiedWorker],
    digest: bytes,
    selection: Selection,
    config: ClientConfig,
    sealing: SealSessions,
    root_version: int,
) -> SealedCall:
    """Seal `generation` to the chosen workers, with fresh answer and content keys."""
    response_key = os.urandom(32)
    content_key = os.urandom(32)
    payload = SealedPayload(request_id=request_id, request=generation, response_key=response_key)
    sealed = seal_request(
        _payload_encoder.encode(payload),
        [w.recipient for w in chosen],
        request_id,
        config.network,
        sealing,
        content_key,
    )
    request = Request(
        request_id=request_id,
        model=generation.model,
        max_coefficient_milli=config.max_coefficient_milli,
        max_tokens=generation.max_tokens or 0,
        timeout_ms=int(config.request_timeout_s * 1000),
        candidates=[w.key_id for w in chosen],
        sealed=sealed,
        root_version=root_version,
        tier=selection.tier.wire(),
        replicas=selection.tier.replicas,
    )
    return SealedCall(
        request,
        response_key,
        {w.public_key: w for w in chosen},
        digest,
        generation,
        selection,
        content_key,
    )


class RecentCalls(OrderedDict[str, "SealedCall"]):
    """The recent calls by request id, within RECENT_REQUESTS and RECENT_CALLS_BYTES."""

    def __init__(self, budget_bytes: int = RECENT_CALLS_BYTES) -> None:
        super().__init__()
        self.budget_bytes = budget_bytes
        self.bytes = 0

    @staticmethod
    def cost(call: SealedCall) -> int:
        """What a call holds: its envelope, and the request it was sealed from."""
        return 2 * len(call.request.sealed)

    def keep(self, request_id: str, call: SealedCall) -> SealedCall:
        old = self.pop(request_id, None)
        if old is not None:
            self.bytes -= self.cost(old)
        self[request_id] = call
        self.bytes += self.cost(call)
        while len(self) > RECENT_REQUESTS or (self.bytes > self.budget_bytes and len(self) > 1):
            _, dropped = self.popitem(last=False)
            self.bytes -= self.cost(dropped)
        return call


def sealed_before(
    recent: OrderedDict[str, SealedCall], request_id: str, request_digest: bytes
) -> SealedCall | None:
    """The call sealed earlier under ``request_id``, which a retry resends as it was;
    raise ClientError if the id was used for a different request."""
    call = recent.get(request_id)
    if call is not None and call.request_digest != request_digest:
        raise ClientError(
            "duplicate_request_id",
            f"request id {request_id} was already used for a different request",
        )
    return call
