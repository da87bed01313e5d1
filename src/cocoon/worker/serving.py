"""Answering one sealed request: open the envelope, run the backend, seal each
chunk with the client's response key, and sign receipts as the answer leaves.

What a receipt earns is recorded through the worker's `owe` and `durable` before
the receipt leaves, so that a kill -9 never loses what a client holds proof of."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from ..config import WorkerConfig
from ..crypto.answer_stream import AnswerSealer
from ..crypto.errors import SealError
from ..crypto.receipts import Receipt
from ..crypto.sealing import OpenSessions, open_request
from ..inference import AnswerChunk, SealedPayload, Usage, payload_decoder
from ..node import NodeCredentials
from ..request_log import RequestLog
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import (
    BODY_SIGNATURE_MINOR,
    AnswerEnd,
    AnswerPart,
    Error,
    Message,
    Request,
)
from ..wire.transport import Channel
from .answering import ReceiptSigner, batches, close_quietly, coalesce
from .backends.base import Backend, BackendError
from .receipt_seqs import ReceiptSeqs
from .stats import WorkerStats

Owe = Callable[[str | None, Receipt | None, bytes | None, Request], None]

log = logging.getLogger(__name__)
request_lines = RequestLog(__name__)

_chunk_encoder = msgspec.msgpack.Encoder()
# Partial receipts ride at least this often (seconds) on long, slow streams.
RECEIPT_INTERVAL_S = 1.0


async def send_quietly(channel: Channel, message: Message) -> None:
    """Send, unless the connection is gone (there is no one left to tell)."""
    with contextlib.suppress(WireError):
        await channel.send(message)


class RequestServing:
    """The worker's answering of requests, one task per request."""

    def __init__(
        self,
        config: WorkerConfig,
        credentials: NodeCredentials,
        backend: Backend,
        sessions: OpenSessions,
        seqs: ReceiptSeqs,
        stats: WorkerStats,
        *,
        owe: Owe,
        durable: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.backend = backend
        self.sessions = sessions
        self.seqs = seqs
        self.stats = stats
        self.owe = owe
        self.durable = durable

    def open(self, request: Request) -> SealedPayload:
        plaintext = open_request(
            request.sealed,
            self.credentials.key_id,
            self.sessions,
            request.request_id,
            self.config.network,
        )
        try:
            payload = payload_decoder.decode(plaintext)
        except msgspec.DecodeError as exc:
            raise SealError(f"sealed payload is malformed: {exc}") from exc
        # The proxy sees `model` in clear to route; the sealed copy is what the
        # client meant. A mismatch means someone rewrote the routing fields.
        if payload.request_id != request.request_id or payload.request.model != request.model:
            raise SealError("routing fields do not match the sealed request")
        return payload

    async def serve(self, channel: Channel, request: Request, pay_channel: str | None) -> None:
        """Answer one request; `pay_channel` pays for it (the connection may be gone when
        the request ends; what it earned is still owed on that channel)."""
        self.stats.requests += 1
        started = time.time()
        request_id = request.request_id
        try:
            payload = self.open(request)
        except SealError as exc:
            self.stats.failed += 1
            self.stats.requests_total.inc(outcome="bad_envelope")
            await self._send_error(channel, request_id, "bad_envelope", str(exc), False)
            return
        generation = payload.request
        sealer = AnswerSealer(payload.response_key, request_id)
        receipts = ReceiptSigner(
            self.credentials.identity,
            self.config.network,
            self.config.coefficient_milli,
            request,
            started,
            self.seqs.next_run(),
            # A proxy of 1.5 or before, or a client it names as such, may check it.
            body_signature=request.body_signature or channel.peer_minor < BODY_SIGNATURE_MINOR,
        )
        chunks = batches(self.backend, generation)
        every = max(1, self.config.receipt_every)
        first_chunk = True
        last_receipt = time.monotonic()
        status = "ok"
        try:
            final: AnswerChunk | None = None
            async for batch in chunks:
                # What the backend had ready at once leaves as one sealed chunk.
                chunk, final = coalesce(batch)
                if chunk is None:
                    if final is not None:
                        break
                    continue
                if final is not None and not first_chunk:
                    # The end came with the last text: one sealed chunk carries
                    # both, one frame fewer on every hop (the first text still
                    # leaves alone, at once, naming the worker).
                    final = msgspec.structs.replace(final, text=chunk.text + final.text)
                    receipts.completion_tokens += 1
                    break
                if first_chunk:
                    first_chunk = False
                    self.stats.first_chunk_seconds.observe(time.time() - started)
                    if generation.stream:
                        # Tells the client, before any text, which of its
                        # candidates answers: the seal vouches for it, so the
                        # client need not check a signature to know.
                        chunk = msgspec.structs.replace(
                            chunk, worker=self.credentials.identity.public_key
                        )
                index = sealer.index
                sealed = sealer.seal(_chunk_encoder.encode(chunk), final=False)
                # One per sealed chunk, even one of several tokens: a partial
                # receipt may claim no more tokens than chunks the client has
                # (it checks); the final receipt carries the backend's count.
                receipts.completion_tokens += 1
                receipt = None
                now = time.monotonic()
                # The first part of a stream carries one, so that a stream cut
                # at once still bills its prompt; then every `every` chunks or
                # second. An answer read in one piece needs only the final one.
                if (
                    (index == 0 and generation.stream)
                    or (index + 1) % every == 0
                    or now - last_receipt >= RECEIPT_INTERVAL_S
                ):
                    receipt = receipts.sign(sealer, final=False)
                    # Recorded before it leaves, as the final one is: the proxy bills
                    # from it, and a kill -9 skips the `finally` below (issue 16).
                    self.owe(pay_channel, receipts.last, receipt, request)
                    await self.durable()
                    last_receipt = now
                tag = b"" if receipt is None else sealer.receipt_tag(receipt)
                channel.send_nowait(AnswerPart(request_id, index, sealed, receipt, tag))
                await channel.drain()
                if final is not None:
                    break
            if final is None:
                final = AnswerChunk(finish_reason="stop")
            usage = final.usage or Usage(
                prompt_tokens=0, completion_tokens=receipts.completion_tokens
            )
            index = sealer.index
            sealed = sealer.seal(_chunk_encoder.encode(final), final=True)
            receipt = receipts.sign(sealer, final=True, usage=usage)
            self.owe(pay_channel, receipts.last, receipt, request)
            await self.durable()
            tag = sealer.receipt_tag(receipt)
            await channel.send(AnswerEnd(request_id, index, sealed, receipt, tag))
            self.stats.completed += 1
            self.stats.completion_tokens += usage.completion_tokens
            self.stats.tokens_total.inc(usage.prompt_tokens, kind="prompt")
            self.stats.tokens_total.inc(usage.completion_tokens, kind="completion")
        except BackendError as exc:
            status = exc.code
            self.stats.failed += 1
            await self._send_error(channel, request_id, exc.code, exc.message, exc.retryable)
        except (ConnectionClosed, PeerError):
            status = "disconnected"
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            await close_quietly(chunks)
            if status != "ok" and receipts.last is not None:
                # Cut short: the proxy bills what the last receipt it got proves.
                self.owe(pay_channel, receipts.last, receipts.last_bytes, request)
            self.stats.requests_total.inc(outcome=status)
            self.stats.request_seconds.observe(time.time() - started)
            request_lines.info(
                "request %s model=%s chunks=%d status=%s %.1f ms",
                request_id,
                request.model,
                sealer.index,
                status,
                (time.time() - started) * 1000,
            )

    async def _send_error(
        self, channel: Channel, request_id: str, code: str, message: str, retryable: bool
    ) -> None:
        await send_quietly(channel, Error(request_id, code, message, retryable))
