"""The relay: a client's sealed request to a worker, the sealed answer back.

Each client `Request` runs in a task of its own: pick the best candidate,
forward, relay the sealed answer frames back. A worker that fails before its
first answer chunk is replaced by the next candidate; after that the client
gets a clean error and is billed only for what the last receipt proves. A
retry of a request id (same envelope) follows or replays the first run
(`inflight.py`) instead of running again.

The relay moves frames and nothing else: the request is taken on account
(`Settlement.open`) before it leaves, and each receipt goes to its `Tab` once,
as its frame goes by.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from functools import partial

import msgspec

from ..config import ProxyConfig
from ..crypto.hashing import sha256
from ..metrics import Registry
from ..payments.errors import LedgerError
from ..request_log import RequestLog
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import BODY_SIGNATURE_MINOR, AnswerEnd, AnswerPart, Error, Message, Request
from ..wire.transport import AnswerStream, Channel
from .deadlines import DeadlineConfig, FirstChunkDeadlines
from .inflight import Entry, InflightRegistry
from .router import Router
from .settlement import Settlement
from .tab import Tab
from .worker_state import WorkerInfo

log = logging.getLogger(__name__)
request_lines = RequestLog(__name__)


class _NoWorker(Exception):
    """No candidate could take the request; `error` says why."""

    def __init__(self, error: Error) -> None:
        self.error = error


class Relay:
    """Runs clients' requests on workers and relays the answers."""

    def __init__(
        self,
        config: ProxyConfig,
        router: Router,
        inflight: InflightRegistry,
        settlement: Settlement,
        metrics: Registry,
        deadlines: DeadlineConfig | None = None,
    ) -> None:
        self.config = config
        self.router = router
        self.inflight = inflight
        self.settlement = settlement
        m = metrics
        self.requests_total = m.counter("requests_total", "Requests by model and outcome.")
        self.retries_total = m.counter("retries_total", "Requests moved to another worker.")
        self.first_chunk_seconds = m.histogram(
            "first_chunk_seconds", "Time from request to first answer chunk."
        )
        self.request_seconds = m.histogram("request_seconds", "Time from request to answer end.")
        self.deadline_misses_total = m.counter(
            "first_chunk_deadline_misses_total", "Attempts moved on for want of a first chunk."
        )
        if deadlines is None:
            first = config.first_chunk
            deadlines = DeadlineConfig(
                factor=first.factor,
                floor_s=first.floor_s,
                cold_s=first.cold_s,
                drop_after=first.drop_after,
            )
        self.deadlines = FirstChunkDeadlines(deadlines)
        self._closing: set[asyncio.Task[None]] = set()

    async def route(self, client: Channel, request: Request) -> None:
        request_id = request.request_id
        envelope_hash = sha256(request.sealed)
        entry = self.inflight.get(request_id)
        if entry is not None:
            if entry.envelope_hash != envelope_hash:
                await send_quietly(
                    client,
                    Error(request_id, "duplicate_request_id", "request id already used", False),
                )
                return
            log.info("request %s is a retry; following the first run", request_id)
            await self._replay(client, entry)
            return
        tab = await self.settlement.open(client, request, envelope_hash, time.monotonic())
        if isinstance(tab, Error):
            await send_quietly(client, tab)
            return
        if client.peer_minor < BODY_SIGNATURE_MINOR and not request.body_signature:
            # A client of 1.5 or before may check the receipt's body signature.
            request = msgspec.structs.replace(request, body_signature=True)
        entry = self.inflight.start(request_id, envelope_hash)
        started = time.monotonic()
        outcome = "ok"
        timeout_s = min(self.config.request_timeout_s, max(0.001, request.timeout_ms / 1000))
        if request.timeout_ms <= 0:
            timeout_s = self.config.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._run(client, request, entry, tab, started)
            if entry.frames and isinstance(entry.frames[-1], Error):
                outcome = entry.frames[-1].code  # e.g. the worker died mid-stream
        except _NoWorker as exc:
            outcome = exc.error.code
            await _answer_ends(client, entry, exc.error)
        except TimeoutError:
            outcome = "timeout"
            error = Error(request_id, "timeout", f"no answer within {timeout_s:g} s", False)
            await _answer_ends(client, entry, error)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.inflight.finish(request_id)
            elapsed = time.monotonic() - started
            self.requests_total.inc(model=request.model, outcome=outcome)
            self.request_seconds.observe(elapsed)
            request_lines.info(
                "request %s client=%s model=%s outcome=%s %.1f ms",
                request_id,
                client.key_id,
                request.model,
                outcome,
                elapsed * 1000,
            )

    async def _run(
        self, client: Channel, request: Request, entry: Entry, tab: Tab, started: float
    ) -> None:
        candidates = self.router.candidates(
            request.model, request.max_coefficient_milli, request.candidates, now=time.monotonic()
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
            rest = candidates[attempt + 1 :]
            deadline_s = self.deadlines.deadline_s(
                worker, request.model, last_candidate=not _any_usable(rest)
            )
            failure = await self._try_worker(
                client,
                request,
                entry,
                worker,
                tab,
                started,
                deadline_s,
                partial(_any_usable, rest),
            )
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
        tab: Tab,
        started: float,
        deadline_s: float | None = None,
        others_usable: Callable[[], bool] = lambda: False,
    ) -> Error | None:
        """Run the request on one worker; an Error back means: try the next candidate.

        `deadline_s`: how long to wait for the first chunk before moving on, if
        `others_usable()` then says another candidate can take the request."""
        request_id = request.request_id
        assignment = self.router.dispatch(worker, request.model, time.monotonic())
        stream = None
        delivered = False
        try:
            stream = worker.channel.request(request)
            frames: AsyncIterator[AnswerPart | AnswerEnd] = stream
            if deadline_s is not None:
                first = await self._first_frame(stream, deadline_s, others_usable)
                if first is None:
                    assignment.failed = True
                    self._missed(worker, request_id, deadline_s)
                    return Error(
                        request_id,
                        "worker_timeout",
                        f"no first chunk within {deadline_s:.1f} s",
                        True,
                    )
                frames = _chain(first, stream)
            async for frame in frames:
                if not delivered:
                    delivered = True
                    latency = time.monotonic() - started
                    self.router.record_first_chunk(assignment, time.monotonic())
                    self.deadlines.answered(
                        worker, request.model, time.monotonic() - assignment.started
                    )
                    self.first_chunk_seconds.observe(latency)
                if frame.receipt is not None:
                    # Billed before the frame goes on; a bad final receipt fails the answer.
                    frame = await tab.take(frame, worker, time.monotonic())
                entry.append(frame)
                client.send_nowait(frame)
                await client.drain()
            return None
        except PeerError as exc:
            assignment.failed = True
            if not delivered and exc.retryable:
                return Error(request_id, exc.code, exc.message, True)
            error = Error(request_id, exc.code, exc.message, False)
            await _answer_ends(client, entry, error)
            return None
        except LedgerError as exc:
            # Served, but this proxy's book refused to bill it (proxy/bills.py logs
            # why): the client is told, not left waiting for its timeout, and the
            # worker, which did the work and holds its receipt, is not blamed.
            error = Error(
                request_id, "billing_failed", f"the proxy could not bill it: {exc}", False
            )
            await _answer_ends(client, entry, error)
            return None
        except ConnectionClosed:
            if client.closed:
                # Nobody to answer; what was delivered is billed by its receipts.
                entry.append(Error(request_id, "client_gone", "the client went away", False))
                return None
            assignment.failed = True
            if not delivered:
                log.warning("worker %s failed before answering %s", worker.key_id, request_id)
                return Error(request_id, "worker_failed", "worker went away", True)
            error = Error(
                request_id,
                "worker_failed",
                "the worker went away in the middle of the answer",
                False,
            )
            await _answer_ends(client, entry, error)
            return None
        finally:
            now = time.monotonic()
            self.router.settle(assignment, now)
            tab.flush(now)  # no final receipt came: bill what the worker proved it served
            if stream is not None:
                await stream.cancel()

    async def _first_frame(
        self, stream: AnswerStream, deadline_s: float, others_usable: Callable[[], bool]
    ) -> AnswerPart | AnswerEnd | None:
        """The stream's first frame, or None if it did not come within `deadline_s` and
        another candidate can take the request (if none can, waiting on is all there is)."""
        try:
            async with asyncio.timeout(deadline_s):
                return await anext(stream)
        except TimeoutError:
            if others_usable():
                return None
        return await anext(stream)

    def _missed(self, worker: WorkerInfo, request_id: str, deadline_s: float) -> None:
        self.deadline_misses_total.inc()
        log.warning(
            "worker %s sent no first chunk of %s within %.1f s; trying the next candidate",
            worker.key_id,
            request_id,
            deadline_s,
        )
        if self.deadlines.missed(worker):
            log.warning(
                "worker %s missed %d first-chunk deadlines in a row; disconnecting it",
                worker.key_id,
                self.deadlines.config.drop_after,
            )
            self.router.remove(worker.key_id, worker.channel)
            task = asyncio.create_task(worker.channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

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


def _any_usable(workers: list[WorkerInfo]) -> bool:
    """Whether any of `workers` can take a request now."""
    return any(w.free > 0 and not w.channel.closed for w in workers)


async def _chain(
    first: AnswerPart | AnswerEnd, rest: AnswerStream
) -> AsyncIterator[AnswerPart | AnswerEnd]:
    yield first
    if isinstance(first, AnswerEnd):
        return
    async for frame in rest:
        yield frame


async def _answer_ends(client: Channel, entry: Entry, error: Error) -> None:
    """End a request's answer with `error`: kept for its retries, sent to its client."""
    entry.append(error)
    await send_quietly(client, error)


async def send_quietly(channel: Channel, message: Message) -> None:
    with suppress(WireError):
        await channel.send(message)
