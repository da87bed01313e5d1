"""The proxy service: accepts workers and clients, routes sealed requests.

The proxy never holds a prompt or an answer in clear: it sees the routing
fields (model, price bound, candidate workers), sizes and timings, and the
receipts it bills from. Each client `Request` runs in a task of its own:
pick the best candidate, forward, relay the sealed answer frames back. A
worker that fails before its first answer chunk is replaced by the next
candidate; after that the client gets a clean error and is billed only for
what the last receipt proves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from ..config import ProxyConfig, split_address
from ..crypto.errors import ReceiptError
from ..crypto.hashing import sha256
from ..metrics import Registry
from ..node import NodeCredentials, peer_policy
from ..payments.ledger import Ledger
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import (
    DIRECTORY_PUSH,
    AnswerEnd,
    AnswerPart,
    Cancel,
    Directory,
    DirectoryRequest,
    Error,
    Message,
    Request,
    WorkerAnnounce,
    WorkerEntry,
    WorkerLoad,
)
from ..wire.transport import Channel, serve
from .billing import Biller
from .inflight import Entry, InflightRegistry
from .router import Router, WorkerInfo

log = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT_S = 10.0
# A partial receipt is verified and billed at most this often per request (the
# final one always is). Verifying costs an Ed25519 check and a ledger write; a
# partial receipt only matters if no final one follows (the worker died, the
# client left), and then the latest one is billed when the stream ends.
PARTIAL_BILL_INTERVAL_S = 1.0


class _NoWorker(Exception):
    """No candidate could take the request; `error` says why."""

    def __init__(self, error: Error) -> None:
        self.error = error


class Proxy:
    """One proxy node."""

    def __init__(self, config: ProxyConfig, credentials: NodeCredentials, ledger: Ledger) -> None:
        self.config = config
        self.credentials = credentials
        self.ledger = ledger
        self.biller = Biller(ledger, config.prices, config.network)
        self.router = Router()
        self.inflight = InflightRegistry()
        self.clients: dict[Channel, dict[str, asyncio.Task[None]]] = {}
        self.server: asyncio.Server | None = None
        self.port = 0
        self.started_at = time.time()
        self.metrics = Registry("cocoon_proxy")
        m = self.metrics
        self.requests_total = m.counter("requests_total", "Requests by model and outcome.")
        self.retries_total = m.counter("retries_total", "Requests moved to another worker.")
        self.tokens_total = m.counter("tokens_total", "Tokens billed, by class.")
        self.billed_nano_total = m.counter("billed_nanotons_total", "Nanotons billed.")
        self.refused_total = m.counter("refused_connections_total", "Handshakes refused.")
        self.bad_receipts_total = m.counter("bad_receipts_total", "Receipts that did not verify.")
        self.first_chunk_seconds = m.histogram(
            "first_chunk_seconds", "Time from request to first answer chunk."
        )
        self.request_seconds = m.histogram("request_seconds", "Time from request to answer end.")
        m.gauge("workers", "Connected workers.", lambda: float(len(self.router.workers)))
        m.gauge("clients", "Connected clients.", lambda: float(len(self.clients)))
        m.gauge("active_requests", "Requests running.", lambda: float(self.inflight.running))

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        host, port = split_address(self.config.listen)
        self.server = await serve(
            host,
            port,
            local=lambda: self.credentials.local,
            policy=peer_policy(
                self.config.network, self.config.tee.allow_untrusted, self.config.tee
            ),
            accept_roles=frozenset({"worker", "client"}),
            ssl_context=self.credentials.server_ssl_context(),
            on_channel=self._on_channel,
            max_frame=self.config.max_frame_bytes,
            on_refused=self._on_refused,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("proxy %s listening on %s:%d", self.credentials.key_id, host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        channels = [w.channel for w in self.router.workers.values()] + list(self.clients)
        for channel in channels:
            await channel.close()
        if self.server is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def renew_certificate(self) -> None:
        """Issue a fresh certificate and show it on every open connection."""
        certificate = self.credentials.renew()
        channels = [w.channel for w in self.router.workers.values()] + list(self.clients)
        for channel in channels:
            await channel.renew(certificate)
        log.info("renewed the certificate; told %d peers", len(channels))

    def _on_refused(self, reason: str) -> None:
        self.refused_total.inc(reason=reason)

    async def _on_channel(self, channel: Channel) -> None:
        if channel.peer_role == "worker":
            await self._run_worker(channel)
        else:
            await self._run_client(channel)

    # -- workers -------------------------------------------------------------

    async def _run_worker(self, channel: Channel) -> None:
        announced = asyncio.Event()
        info: WorkerInfo | None = None

        async def on_message(ch: Channel, message: Message) -> None:
            nonlocal info
            if isinstance(message, WorkerAnnounce):
                info = WorkerInfo(
                    key_id=ch.key_id,
                    models=frozenset(message.models),
                    coefficient_milli=message.coefficient_milli,
                    max_active_requests=max(1, message.max_active_requests),
                    trusted=ch.verdict.trusted,
                    channel=ch,
                )
                old = self.router.workers.get(ch.key_id)
                if old is not None and old.channel is not ch:
                    # A reconnect can overtake the old connection's teardown.
                    info.active = old.active
                    await old.channel.close()
                self.router.add(info)
                announced.set()
                await self._push_directory()
                log.info(
                    "worker %s joined from %s: models=%s coefficient=%d capacity=%d %s",
                    ch.key_id,
                    ch.peer_address,
                    ",".join(message.models),
                    message.coefficient_milli,
                    message.max_active_requests,
                    "trusted" if ch.verdict.trusted else "UNTRUSTED",
                )
            elif isinstance(message, WorkerLoad):
                pass  # the proxy counts what it routed; reported load is informational
            else:
                log.debug("ignoring %s from worker %s", type(message).__name__, ch.key_id)

        try:
            await channel.run(on_message)
        finally:
            self.router.remove(channel.key_id, channel)
            if announced.is_set():
                log.info("worker %s left: %s", channel.key_id, channel.close_reason)
                await self._push_directory()

    # -- clients -------------------------------------------------------------

    async def _run_client(self, channel: Channel) -> None:
        tasks: dict[str, asyncio.Task[None]] = {}
        self.clients[channel] = tasks
        log.info(
            "client %s connected from %s (%s)",
            channel.key_id,
            channel.peer_address,
            "trusted" if channel.verdict.trusted else "untrusted",
        )

        async def on_message(ch: Channel, message: Message) -> None:
            if isinstance(message, Request):
                request_id = message.request_id
                task = asyncio.create_task(self._route(ch, message))
                tasks[request_id] = task
                task.add_done_callback(lambda _t: tasks.pop(request_id, None))
            elif isinstance(message, Cancel):
                running = tasks.get(message.request_id)
                if running is not None:
                    running.cancel()
            elif isinstance(message, DirectoryRequest):
                await ch.send(self._directory(message))
            else:
                log.debug("ignoring %s from client %s", type(message).__name__, ch.key_id)

        try:
            await channel.run(on_message)
        finally:
            del self.clients[channel]
            for task in list(tasks.values()):
                task.cancel()

    async def _push_directory(self) -> None:
        """Tell every client the workers changed (they would learn it at the next refresh)."""
        directory = self._directory(DirectoryRequest(DIRECTORY_PUSH, ""))
        for client in list(self.clients):
            with suppress(WireError):
                await client.send(directory)

    def _directory(self, request: DirectoryRequest) -> Directory:
        entries = [
            WorkerEntry(
                w.key_id,
                # The channel's, not the one from the handshake: workers renew.
                w.channel.peer.der,
                sorted(w.models),
                w.coefficient_milli,
                w.max_active_requests,
                w.active,
            )
            for w in self.router.workers.values()
            if not request.model or request.model in w.models
        ]
        return Directory(request.seq, entries)

    # -- routing -------------------------------------------------------------

    async def _route(self, client: Channel, request: Request) -> None:
        request_id = request.request_id
        envelope_hash = sha256(request.sealed)
        entry = self.inflight.get(request_id)
        if entry is not None:
            if entry.envelope_hash != envelope_hash:
                await _send_quietly(
                    client,
                    Error(request_id, "duplicate_request_id", "request id already used", False),
                )
                return
            log.info("request %s is a retry; following the first run", request_id)
            await self._replay(client, entry)
            return
        if self.ledger.charge(request_id) is not None:
            await _send_quietly(
                client,
                Error(
                    request_id,
                    "duplicate_request_id",
                    "this request id was already answered (in full or in part) and billed;"
                    " send a new id to ask again",
                    False,
                ),
            )
            return
        entry = self.inflight.start(request_id, envelope_hash)
        started = time.monotonic()
        outcome = "ok"
        timeout_s = min(self.config.request_timeout_s, max(0.001, request.timeout_ms / 1000))
        if request.timeout_ms <= 0:
            timeout_s = self.config.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._run(client, request, entry, envelope_hash, started)
            if entry.frames and isinstance(entry.frames[-1], Error):
                outcome = entry.frames[-1].code  # e.g. the worker died mid-stream
        except _NoWorker as exc:
            outcome = exc.error.code
            entry.append(exc.error)
            await _send_quietly(client, exc.error)
        except TimeoutError:
            outcome = "timeout"
            error = Error(request_id, "timeout", f"no answer within {timeout_s:g} s", False)
            entry.append(error)
            await _send_quietly(client, error)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.inflight.finish(request_id)
            elapsed = time.monotonic() - started
            self.requests_total.inc(model=request.model, outcome=outcome)
            self.request_seconds.observe(elapsed)
            log.info(
                "request %s client=%s model=%s outcome=%s %.1f ms",
                request_id,
                client.key_id,
                request.model,
                outcome,
                elapsed * 1000,
            )

    async def _run(
        self,
        client: Channel,
        request: Request,
        entry: Entry,
        envelope_hash: bytes,
        started: float,
    ) -> None:
        candidates = self.router.candidates(
            request.model, request.max_coefficient_milli, request.candidates
        )
        if not candidates:
            if not self.router.serves(request.model):
                code, message = "model_not_found", f"no worker serves model {request.model}"
            else:
                code, message = "no_capacity", "none of the chosen workers is available"
            raise _NoWorker(Error(request.request_id, code, message, True))
        last_error = Error(
            request.request_id, "no_capacity", "all candidate workers are busy", True
        )
        for attempt, worker in enumerate(candidates):
            if worker.free <= 0 or worker.channel.closed:
                continue
            if attempt:
                self.retries_total.inc()
            failure = await self._try_worker(client, request, entry, worker, envelope_hash, started)
            if failure is None:
                return
            last_error = failure
        raise _NoWorker(last_error)

    async def _try_worker(
        self,
        client: Channel,
        request: Request,
        entry: Entry,
        worker: WorkerInfo,
        envelope_hash: bytes,
        started: float,
    ) -> Error | None:
        """Run the request on one worker; an Error back means: try the next candidate."""
        request_id = request.request_id
        worker.active += 1
        stream = None
        delivered = False
        # The latest partial receipt not billed yet, and when one last was.
        unbilled: AnswerPart | None = None
        billed_at = time.monotonic()
        try:
            stream = worker.channel.request(request)
            async for frame in stream:
                if not delivered:
                    delivered = True
                    latency = time.monotonic() - started
                    self.router.record_first_chunk(worker, latency * 1000)
                    self.first_chunk_seconds.observe(latency)
                if frame.receipt is not None:
                    now = time.monotonic()
                    if isinstance(frame, AnswerEnd) or now - billed_at >= PARTIAL_BILL_INTERVAL_S:
                        unbilled = None
                        billed_at = now
                        self._bill(frame.receipt, request, worker, client, envelope_hash, frame)
                    else:
                        unbilled = frame
                entry.append(frame)
                client.send_nowait(frame)
                await client.drain()
            return None
        except PeerError as exc:
            worker.failures += 1
            if not delivered and exc.retryable:
                return Error(request_id, exc.code, exc.message, True)
            error = Error(request_id, exc.code, exc.message, False)
            entry.append(error)
            await _send_quietly(client, error)
            return None
        except ConnectionClosed:
            if client.closed:
                # Nobody to answer; what was delivered is billed by its receipts.
                entry.append(Error(request_id, "client_gone", "the client went away", False))
                return None
            worker.failures += 1
            if not delivered:
                log.warning("worker %s failed before answering %s", worker.key_id, request_id)
                return Error(request_id, "worker_failed", "worker went away", True)
            error = Error(
                request_id,
                "worker_failed",
                "the worker went away in the middle of the answer",
                False,
            )
            entry.append(error)
            await _send_quietly(client, error)
            return None
        finally:
            worker.active -= 1
            if unbilled is not None and unbilled.receipt is not None:
                # No final receipt came: bill what the worker proved it served.
                self._bill(unbilled.receipt, request, worker, client, envelope_hash, unbilled)
            if stream is not None:
                await stream.cancel()

    def _bill(
        self,
        receipt_bytes: bytes,
        request: Request,
        worker: WorkerInfo,
        client: Channel,
        envelope_hash: bytes,
        frame: AnswerPart | AnswerEnd,
    ) -> None:
        try:
            receipt = self.biller.bill(
                receipt_bytes,
                request,
                worker_key=worker.channel.peer.public_key,
                worker_key_id=worker.key_id,
                client_key_id=client.key_id,
                coefficient_milli=worker.coefficient_milli,
                request_hash=envelope_hash,
            )
        except ReceiptError as exc:
            self.bad_receipts_total.inc()
            log.warning(
                "bad receipt from worker %s for %s: %s", worker.key_id, request.request_id, exc
            )
            if isinstance(frame, AnswerEnd):
                raise PeerError("bad_receipt", f"worker receipt rejected: {exc}", False) from exc
            return
        if receipt.final:
            self.tokens_total.inc(receipt.prompt_tokens, kind="prompt")
            self.tokens_total.inc(receipt.completion_tokens, kind="completion")
            self.billed_nano_total.inc(self.biller.price(receipt, worker.coefficient_milli))

    async def _replay(self, client: Channel, entry: Entry) -> None:
        seen = 0
        while True:
            frames = entry.frames
            while seen < len(frames):
                client.send_nowait(frames[seen])
                seen += 1
            await client.drain()
            if entry.done and seen >= len(entry.frames):
                return
            await entry.follow(seen)

    # -- status --------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Everything /jsonstats and the status page show."""
        totals = self.ledger.totals()
        return {
            "role": "proxy",
            "node": self.credentials.trust_summary(),
            "network": self.config.network,
            "listen": f"{split_address(self.config.listen)[0]}:{self.port}",
            "uptime_s": round(time.time() - self.started_at, 1),
            "workers": [
                {
                    "key_id": w.key_id,
                    "address": w.channel.peer_address,
                    "models": sorted(w.models),
                    "coefficient_milli": w.coefficient_milli,
                    "max_active_requests": w.max_active_requests,
                    "active": w.active,
                    "served": w.served,
                    "failures": w.failures,
                    "first_chunk_ewma_ms": round(w.first_chunk_ewma_ms, 2),
                    "trusted": w.trusted,
                    "attestation": w.channel.verdict.reason,
                }
                for w in self.router.workers.values()
            ],
            "models": {model: len(ws) for model, ws in sorted(self.router.models().items())},
            "clients": [
                {
                    "key_id": c.key_id,
                    "address": c.peer_address,
                    "trusted": c.verdict.trusted,
                    "active": len(tasks),
                }
                for c, tasks in self.clients.items()
            ],
            "requests": {
                "running": self.inflight.running,
                "by_outcome": {
                    f"{dict(k).get('model')}/{dict(k).get('outcome')}": int(v)
                    for k, v in self.requests_total.values.items()
                },
                "retries": int(self.retries_total.total()),
                "first_chunk_p50_s": self.first_chunk_seconds.quantile(0.5),
                "first_chunk_p99_s": self.first_chunk_seconds.quantile(0.99),
            },
            "refused_connections": {
                dict(k).get("reason", "?"): int(v) for k, v in self.refused_total.values.items()
            },
            "billing": {
                "requests": totals.requests,
                "prompt_tokens": totals.prompt_tokens,
                "completion_tokens": totals.completion_tokens,
                "billed_nano": totals.amount_nano,
                "bad_receipts": int(self.bad_receipts_total.total()),
                "prices": {
                    name: getattr(self.config.prices, name)
                    for name in self.config.prices.__struct_fields__
                },
            },
        }


async def _send_quietly(channel: Channel, message: Message) -> None:
    with suppress(WireError):
        await channel.send(message)
