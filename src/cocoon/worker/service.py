"""The worker service: connects out to a proxy and answers sealed requests.

The worker dials the proxy (so it can sit behind NAT), announces its models,
price coefficient and capacity, then serves every `Request` in a task of its
own: open the envelope with its HPKE key, run the backend, seal each chunk
with the client's response key, sign receipts. It reconnects by itself when
the proxy goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import msgspec

from ..config import WorkerConfig, split_address
from ..crypto.answer_stream import AnswerSealer
from ..crypto.errors import SealError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, sign_receipt
from ..crypto.sealing import OpenSessions, open_request
from ..inference import AnswerChunk, GenerationRequest, SealedPayload, Usage, payload_decoder
from ..metrics import Registry
from ..node import NodeCredentials, peer_policy
from ..payments.errors import PaymentError
from ..payments.sides import PayeeSide, payments_snapshot, receipt_price, worker_share
from ..wire.dialer import Dialer
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import (
    AnswerEnd,
    AnswerPart,
    Cancel,
    Error,
    Invoice,
    Message,
    PayChannel,
    Request,
    VoucherMsg,
    WorkerAnnounce,
)
from ..wire.transport import Channel
from .backends.base import Backend, BackendError

log = logging.getLogger(__name__)

_chunk_encoder = msgspec.msgpack.Encoder()
# Partial receipts ride at least this often (seconds) on long, slow streams.
RECEIPT_INTERVAL_S = 1.0


class WorkerStats:
    """Counters a worker exposes (plain ints for code, a Registry for /metrics)."""

    def __init__(self, active: Callable[[], float]) -> None:
        self.requests = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.refused = 0
        self.completion_tokens = 0
        self.metrics = Registry("cocoon_worker")
        self.requests_total = self.metrics.counter("requests_total", "Requests by outcome.")
        self.tokens_total = self.metrics.counter("tokens_total", "Tokens served, by class.")
        self.first_chunk_seconds = self.metrics.histogram(
            "first_chunk_seconds", "Time from request to first answer chunk."
        )
        self.request_seconds = self.metrics.histogram(
            "request_seconds", "Time from request to answer end."
        )
        self.metrics.gauge("active_requests", "Requests running.", active)


class Worker:
    """One worker node, bound to one proxy and one backend."""

    def __init__(
        self,
        config: WorkerConfig,
        credentials: NodeCredentials,
        backend: Backend,
        payee: PayeeSide | None = None,
    ) -> None:
        self.config = config
        # With payments on: the proxy pays through a channel; requests wait for it.
        self.payee = payee
        self.pay_channel: str | None = None
        self.credentials = credentials
        self.backend = backend
        # Seal sessions clients opened with this worker (one HPKE decapsulation each).
        self.sessions = OpenSessions(credentials.identity.hpke, config.network)
        self.stats = WorkerStats(lambda: float(self.active))
        self.started_at = time.time()
        self.channel: Channel | None = None
        self.connected = asyncio.Event()
        # Connected and, with payments on, paid through a channel: the proxy routes to it.
        self.ready = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        proxy_host, proxy_port = split_address(config.proxy)
        self.dialer = Dialer(
            proxy_host,
            proxy_port,
            local=lambda: credentials.local,
            policy=peer_policy(config.network, config.tee.allow_untrusted, config.tee),
            accept_roles=frozenset({"proxy"}),
            peer_name="proxy",
        )

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff until stopped."""
        await self.dialer.run(self._session)

    async def _session(self, channel: Channel) -> None:
        self.channel = channel
        await channel.send(
            WorkerAnnounce(
                self.backend.models(),
                self.config.coefficient_milli,
                self.config.max_active_requests,
                self.payee.link.address if self.payee is not None else "",
            )
        )
        self.connected.set()
        if self.payee is None:
            self.ready.set()
        await channel.run(self._on_message)
        self.connected.clear()
        self.ready.clear()
        self.channel = None
        self.pay_channel = None
        for task in list(self._tasks.values()):
            task.cancel()

    async def renew_certificate(self) -> None:
        """Issue a fresh certificate; the proxy hands it to clients from now on."""
        certificate = self.credentials.renew()
        if self.channel is not None:
            await self.channel.renew(certificate)

    def snapshot(self) -> dict[str, object]:
        """Everything /jsonstats shows."""
        channel = self.channel
        stats = self.stats
        return {
            "role": "worker",
            "node": self.credentials.trust_summary(),
            "network": self.config.network,
            "uptime_s": round(time.time() - self.started_at, 1),
            "backend": self.backend.name,
            "models": self.backend.models(),
            "coefficient_milli": self.config.coefficient_milli,
            "max_active_requests": self.config.max_active_requests,
            "active": self.active,
            "proxy": None
            if channel is None
            else {
                "key_id": channel.key_id,
                "address": self.config.proxy,
                "trusted": channel.verdict.trusted,
                "attestation": channel.verdict.reason,
            },
            "reconnects": self.dialer.reconnects,
            "refused_proxy_connections": dict(self.dialer.refusals),
            "requests": {
                "total": stats.requests,
                "completed": stats.completed,
                "failed": stats.failed,
                "cancelled": stats.cancelled,
                "refused": stats.refused,
            },
            "completion_tokens": stats.completion_tokens,
            "seal_sessions": {"held": len(self.sessions), "opened": self.sessions.opened},
            "payments": None
            if self.payee is None
            else payments_snapshot(self.payee.book, self.payee.link),
            "first_chunk_p50_s": stats.first_chunk_seconds.quantile(0.5),
            "first_chunk_p99_s": stats.first_chunk_seconds.quantile(0.99),
        }

    async def stop(self) -> None:
        self.dialer.stop()
        for task in list(self._tasks.values()):
            task.cancel()
        if self.channel is not None:
            await self.channel.close()
        await self.backend.aclose()

    async def _on_message(self, channel: Channel, message: Message) -> None:
        if isinstance(message, Request):
            if self.payee is not None:
                refusal = await self.payee.admit(self.pay_channel)
                if refusal is not None:
                    self.stats.refused += 1
                    self.stats.requests_total.inc(outcome=refusal[0])
                    log.warning("refusing %s: %s", message.request_id, refusal[1])
                    await channel.send(Error(message.request_id, refusal[0], refusal[1], True))
                    return
            if self.active >= self.config.max_active_requests:
                self.stats.refused += 1
                self.stats.requests_total.inc(outcome="no_capacity")
                await channel.send(
                    Error(message.request_id, "no_capacity", "worker is at capacity", True)
                )
                return
            request_id = message.request_id
            task = asyncio.create_task(self._serve(channel, message))
            self._tasks[request_id] = task
            task.add_done_callback(lambda _t: self._tasks.pop(request_id, None))
        elif isinstance(message, Cancel):
            running = self._tasks.get(message.request_id)
            if running is not None:
                self.stats.cancelled += 1
                running.cancel()
        elif isinstance(message, PayChannel | VoucherMsg):
            await self._on_payment(channel, message)
        else:
            log.debug("ignoring %s from the proxy", type(message).__name__)

    async def _on_payment(self, channel: Channel, message: PayChannel | VoucherMsg) -> None:
        payee = self.payee
        if payee is None:
            return
        try:
            if isinstance(message, PayChannel):
                row = await payee.bind(
                    message, payer_node=channel.key_id, payee_node=self.credentials.key_id
                )
                self.pay_channel = row.channel
                self.ready.set()
                log.info(
                    "proxy pays on channel %s (deposit %d, vouchered %d, owed %d)",
                    row.channel,
                    row.deposit_nano,
                    row.total_nano,
                    row.owed_nano,
                )
                await channel.send(payee.state(row.channel))
                # What a crash or a lost connection left unpaid: its receipts again.
                for request_id, receipt in payee.book.unsettled(row.channel):
                    await channel.send(Invoice(request_id, receipt))
            elif message.channel != self.pay_channel:
                raise PaymentError(f"voucher for channel {message.channel}, not this proxy's")
            else:
                await payee.accept(message)
        except PaymentError as exc:
            # A payer whose channel or vouchers do not hold is cut off.
            log.warning("payment from proxy %s refused: %s", channel.key_id, exc)
            await self._send_quietly(channel, Error("", "bad_payment", str(exc), False))
            await channel.close()

    async def settle(self, *, final: bool = False) -> None:
        """Redeem by threshold (everything when `final`); show the proxy what it left
        unpaid for a while (receipts of answers cut while they were in flight)."""
        payee = self.payee
        if payee is None:
            return
        await payee.settle(final=final)
        channel, pay_channel = self.channel, self.pay_channel
        if channel is None or pay_channel is None or final:
            return
        for invoice in payee.overdue(pay_channel, 2 * self.config.payments.settle_interval_s):
            await self._send_quietly(channel, invoice)

    async def _send_quietly(self, channel: Channel, message: Message) -> None:
        with contextlib.suppress(WireError):
            await channel.send(message)

    def _owe(
        self, pay_channel: str | None, receipt: Receipt | None, receipt_bytes: bytes | None
    ) -> None:
        """Record what a receipt entitles this worker to, before the receipt leaves."""
        payee = self.payee
        if payee is None or receipt is None or receipt_bytes is None or pay_channel is None:
            return
        amount = worker_share(receipt_price(payee.link.prices, receipt), payee.link.commission_bp)
        payee.owe(pay_channel, receipt.request_id, amount, receipt.seq, receipt_bytes)

    def _open(self, request: Request) -> SealedPayload:
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

    async def _serve(self, channel: Channel, request: Request) -> None:
        self.stats.requests += 1
        started = time.time()
        request_id = request.request_id
        # The channel that pays for this request (the connection may be gone when
        # the request ends; what it earned is still owed on this channel).
        pay_channel = self.pay_channel
        try:
            payload = self._open(request)
        except SealError as exc:
            self.stats.failed += 1
            self.stats.requests_total.inc(outcome="bad_envelope")
            await self._send_error(channel, request_id, "bad_envelope", str(exc), False)
            return
        generation = payload.request
        sealer = AnswerSealer(payload.response_key, request_id)
        receipts = _ReceiptSigner(self, request, generation, started)
        chunks = _batches(self.backend, generation)
        every = max(1, self.config.receipt_every)
        first_chunk = True
        last_receipt = time.monotonic()
        status = "ok"
        try:
            final: AnswerChunk | None = None
            async for batch in chunks:
                # What the backend had ready at once leaves as one sealed chunk.
                chunk, final = _coalesce(batch)
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
            self._owe(pay_channel, receipts.last, receipt)
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
            await _close_quietly(chunks)
            if status != "ok" and receipts.last is not None:
                # Cut short: the proxy bills what the last receipt it got proves.
                self._owe(pay_channel, receipts.last, receipts.last_bytes)
            self.stats.requests_total.inc(outcome=status)
            self.stats.request_seconds.observe(time.time() - started)
            log.info(
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
        await self._send_quietly(channel, Error(request_id, code, message, retryable))


class _ReceiptSigner:
    """Signs the cumulative receipts of one request."""

    def __init__(
        self, worker: Worker, request: Request, generation: GenerationRequest, started: float
    ) -> None:
        self.worker = worker
        self.request = request
        self.request_hash = sha256(request.sealed)
        self.started_ms = int(started * 1000)
        self.completion_tokens = 0
        self.seq = 0
        self.last: Receipt | None = None
        self.last_bytes: bytes | None = None

    def sign(self, sealer: AnswerSealer, *, final: bool, usage: Usage | None = None) -> bytes:
        worker = self.worker
        receipt = Receipt(
            network=worker.config.network,
            request_id=self.request.request_id,
            model=self.request.model,
            worker_key=worker.credentials.identity.public_key,
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
            coefficient_milli=worker.config.coefficient_milli,
        )
        self.seq += 1
        self.last = receipt
        self.last_bytes = sign_receipt(worker.credentials.identity.signing_key, receipt)
        return self.last_bytes


def _batches(backend: Backend, request: GenerationRequest) -> AsyncIterator[list[AnswerChunk]]:
    """The backend's answer as lists of chunks that were ready together.

    Backends that can tell (`generate_batches`, e.g. the openai backend: one
    list per network read) batch; for the others every chunk is a list of one.
    """
    batched: Callable[[GenerationRequest], AsyncIterator[list[AnswerChunk]]] | None = getattr(
        backend, "generate_batches", None
    )
    if batched is not None:
        return batched(request)
    return _one_by_one(backend.generate(request))


async def _one_by_one(
    chunks: AsyncIterator[AnswerChunk],
) -> AsyncGenerator[list[AnswerChunk], None]:
    try:
        async for chunk in chunks:
            yield [chunk]
    finally:
        await _close_quietly(chunks)


def _coalesce(batch: list[AnswerChunk]) -> tuple[AnswerChunk | None, AnswerChunk | None]:
    """(the text chunks of `batch` as one chunk or None, the final chunk or None)."""
    texts: list[str] = []
    final = None
    for chunk in batch:
        if chunk.finish_reason is not None:
            final = chunk
            break
        texts.append(chunk.text)
    if not texts:
        return None, final
    if len(texts) == 1:
        return batch[0], final
    return AnswerChunk(text="".join(texts)), final


async def _close_quietly(chunks: AsyncIterator[object]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(BackendError, RuntimeError):
            await aclose()
