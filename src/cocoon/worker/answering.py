"""How a worker answers: receipts signed as the answer grows, and the backend's
chunks batched as they come (one sealed chunk per batch)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from ..crypto.answer_stream import AnswerSealer
from ..crypto.hashing import sha256
from ..crypto.identity import NodeIdentity
from ..crypto.receipts import Receipt, sign_receipt
from ..inference import AnswerChunk, GenerationRequest, Usage
from ..wire.messages import Request
from .backends.base import Backend, BackendError


class ReceiptSigner:
    """Signs the cumulative receipts of one request."""

    def __init__(
        self,
        identity: NodeIdentity,
        network: str,
        coefficient_milli: int,
        request: Request,
        started: float,
        first_seq: int = 0,
        *,
        body_signature: bool = True,
    ) -> None:
        self.identity = identity
        # Sign the body too, for a reader of protocol 1.5 or before (else the cell only).
        self.body_signature = body_signature
        self.network = network
        self.coefficient_milli = coefficient_milli
        self.request = request
        self.request_hash = sha256(request.sealed)
        self.started_ms = int(started * 1000)
        self.completion_tokens = 0
        # Each run starts where no receipt of this worker ever was (receipt_seqs.py):
        # one (request, seq) is never signed twice, which would be an equivocation.
        self.seq = first_seq
        self.last: Receipt | None = None
        self.last_bytes: bytes | None = None

    def sign(self, sealer: AnswerSealer, *, final: bool, usage: Usage | None = None) -> bytes:
        receipt = Receipt(
            network=self.network,
            request_id=self.request.request_id,
            model=self.request.model,
            worker_key=self.identity.public_key,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            cached_prompt_tokens=usage.cached_prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else self.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            request_hash=self.request_hash,
            answer_hash=sealer.digest(),
            answer_chunks=sealer.index,
            final=final,
            started_ms=self.started_ms,
            finished_ms=int(time.time() * 1000),
            seq=self.seq,
            coefficient_milli=self.coefficient_milli,
        )
        self.seq += 1
        self.last = receipt
        self.last_bytes = sign_receipt(
            self.identity.signing_key, receipt, body_signature=self.body_signature
        )
        return self.last_bytes


def batches(backend: Backend, request: GenerationRequest) -> AsyncIterator[list[AnswerChunk]]:
    """The backend's answer as lists of chunks that were ready together.

    Backends that can tell (`generate_batches`, e.g. the openai backend: one
    list per network read) batch; for the others every chunk is a list of one.
    """
    batched: Callable[[GenerationRequest], AsyncIterator[list[AnswerChunk]]] | None = getattr(
        backend, "generate_batches", None
    )
    if batched is not None:
        return batched(request)
    return batches_of(backend.generate(request))


async def batches_of(
    chunks: AsyncIterator[AnswerChunk],
) -> AsyncGenerator[list[AnswerChunk], None]:
    try:
        async for chunk in chunks:
            yield [chunk]
    finally:
        await close_quietly(chunks)


def coalesce(batch: list[AnswerChunk]) -> tuple[AnswerChunk | None, AnswerChunk | None]:
    """(the chunks of `batch` before its end as one chunk or None, the final chunk or None).

    Text is joined; tool call pieces and logprobs are kept in order (the
    gateway joins a call's pieces by index, so two of one call may share a chunk)."""
    parts: list[AnswerChunk] = []
    final = None
    for chunk in batch:
        if chunk.finish_reason is not None:
            final = chunk
            break
        parts.append(chunk)
    if not parts:
        return None, final
    if len(parts) == 1:
        return parts[0], final
    return (
        AnswerChunk(
            text="".join(part.text for part in parts),
            tool_calls=[call for part in parts for call in part.tool_calls],
            logprobs=[entry for part in parts for entry in part.logprobs],
        ),
        final,
    )


async def close_quietly(chunks: AsyncIterator[object]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(BackendError, RuntimeError):
            await aclose()
