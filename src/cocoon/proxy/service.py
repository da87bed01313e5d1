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
from contextlib import nullcontext, suppress

from ..config import ProxyConfig, split_address
from ..crypto.errors import CryptoError, ReceiptError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..metrics import Registry
from ..node import NodeCredentials, peer_policy
from ..payments.errors import LedgerError, PaymentError
from ..payments.ledger import Ledger
from ..payments.sides import COLLECT_AT_STOP_S, payments_snapshot, receipt_price, worker_share
from ..pricing import Prices
from ..registry.follower import RootFollower
from ..registry.rules import Refusal, RootRules
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import (
    DIRECTORY_PUSH,
    AnswerEnd,
    AnswerPart,
    Cancel,
    Directory,
    DirectoryRequest,
    Error,
    Invoice,
    Message,
    PayChannel,
    PaymentState,
    PaymentTerms,
    Request,
    VoucherMsg,
    WorkerAnnounce,
    WorkerEntry,
    WorkerLoad,
)
from ..wire.transport import Channel, serve
from .admission import WorkerAdmission
from .billing import Biller
from .inflight import Entry, InflightRegistry
from .payments import ProxyPayments
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

    def __init__(
        self,
        config: ProxyConfig,
        credentials: NodeCredentials,
        ledger: Ledger,
        payments: ProxyPayments | None = None,
        follower: RootFollower | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.ledger = ledger
        self.payments = payments
        # The root contract, when followed: which workers may serve, prices by version.
        self.follower = follower
        self.admission = WorkerAdmission(follower)
        self._announces: dict[str, WorkerAnnounce] = {}
        # With payments on, prices are the root contract's; else the configured ones.
        self.prices = payments.link.prices if payments is not None else config.prices
        self.biller = Biller(ledger, self.prices_at, config.network)
        if follower is not None:
            follower.on_change(self._on_root_change)
        self.router = Router()
        self.inflight = InflightRegistry()
        self._request_channels: dict[str, str] = {}
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
        if self.payments is not None:
            await self._pay_up()
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
                admitted = await self.admission.admit(ch, message)
                if isinstance(admitted, Refusal):
                    log.warning("worker %s refused by the root: %s", ch.key_id, admitted)
                    await _send_quietly(ch, Error("", admitted.reason, admitted.message, False))
                    await ch.close()
                    return
                if self.payments is not None and not await self._pay_worker(ch, message):
                    return
                self._announces[ch.key_id] = message
                info = WorkerInfo(
                    key_id=ch.key_id,
                    models=admitted.models,
                    coefficient_milli=message.coefficient_milli,
                    max_active_requests=max(1, message.max_active_requests),
                    trusted=ch.verdict.trusted,
                    channel=ch,
                    operator=message.wallet or ch.key_id,
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
            elif isinstance(message, Invoice):
                await self._on_worker_invoice(ch, message)
            elif isinstance(message, PaymentState):
                log.info(
                    "worker %s: channel %s owed %d, vouchered %d",
                    ch.key_id,
                    message.channel,
                    message.owed_nano,
                    message.paid_nano,
                )
                if self.payments is not None:
                    self.payments.workers.heard(message)
            elif isinstance(message, Error) and not message.request_id:
                log.warning("worker %s: %s: %s", ch.key_id, message.code, message.message)
            else:
                log.debug("ignoring %s from worker %s", type(message).__name__, ch.key_id)

        try:
            await channel.run(on_message)
        finally:
            if self.payments is not None and channel.key_id in self.payments.worker_channels:
                self.payments.workers.detach(
                    self.payments.worker_channels[channel.key_id], channel.send_nowait
                )
            if self.router.workers.get(channel.key_id, info) is info:
                self._announces.pop(channel.key_id, None)
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
            elif isinstance(message, PayChannel | VoucherMsg):
                await self._on_client_payment(ch, message)
            else:
                log.debug("ignoring %s from client %s", type(message).__name__, ch.key_id)

        payments = self.payments
        if payments is not None:
            await channel.send(
                PaymentTerms(
                    payments.link.address,
                    payments.link.network_id,
                    payments.link.root_address,
                    payments.clients.max_credit_nano,
                )
            )
        try:
            await channel.run(on_message)
        finally:
            del self.clients[channel]
            if payments is not None:
                payments.client_channels.pop(channel, None)
            for task in list(tasks.values()):
                task.cancel()

    def _wallet_of(self, key_id: str) -> str:
        announce = self._announces.get(key_id)
        return announce.wallet if announce is not None else ""

    async def _on_root_change(self, rules: RootRules) -> None:
        """The root changed: check every worker again; drop the ones it withdrew."""
        changed = False
        for worker in list(self.router.workers.values()):
            announce = self._announces.get(worker.key_id)
            if announce is None:
                continue
            verdict = self.admission.recheck(worker.channel, announce.models, announce.wallet)
            if isinstance(verdict, Refusal):
                log.warning("closing worker %s: %s", worker.key_id, verdict)
                await _send_quietly(
                    worker.channel, Error("", verdict.reason, verdict.message, False)
                )
                await worker.channel.close()
            elif verdict.models != worker.models:
                worker.models = verdict.models
                changed = True
        if changed:
            await self._push_directory()

    def prices_at(self, root_version: int) -> Prices:
        """The prices a request is billed at: those of the root version its client sealed
        it under (a change on the root applies to new requests only)."""
        if self.follower is not None:
            return self.follower.prices_at(root_version)
        return self.prices

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
                self._wallet_of(w.key_id),
            )
            for w in self.router.workers.values()
            if not request.model or request.model in w.models
        ]
        return Directory(request.seq, entries)

    # -- routing -------------------------------------------------------------

    async def _route(self, client: Channel, request: Request) -> None:
        request_id = request.request_id
        envelope_hash = sha256(request.sealed)
        if self.follower is not None and request.root_version > self.follower.version:
            # Sealed under a root we have not read yet: bill it at that version's prices.
            with suppress(Exception):
                await self.follower.ensure(request.root_version)
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
        if self.ledger.billed(request_id):
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
        if self.payments is not None and self.payments.book.expected(request_id) is not None:
            # Sent before this proxy restarted: what its first run cost is billed from the
            # worker's receipts (the worker invoices them); a second run would bill twice.
            await _send_quietly(
                client,
                Error(
                    request_id,
                    "duplicate_request_id",
                    "this request id was sent before the proxy restarted; send it with a new id",
                    False,
                ),
            )
            return
        if self.payments is not None:
            refusal = await self.payments.clients.admit(self.payments.client_channels.get(client))
            if refusal is not None:
                log.info("request %s refused: %s", request_id, refusal[1])
                await _send_quietly(client, Error(request_id, refusal[0], refusal[1], False))
                return
            self._expect(client, request, envelope_hash)
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
            self._request_channels.pop(request_id, None)
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
        assignment = self.router.dispatch(worker, request.model, time.monotonic())
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
                    self.router.record_first_chunk(assignment, time.monotonic())
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
            assignment.failed = True
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
            entry.append(error)
            await _send_quietly(client, error)
            return None
        finally:
            self.router.settle(assignment, time.monotonic())
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
        client: Channel | str,
        envelope_hash: bytes,
        frame: AnswerPart | AnswerEnd | None,
    ) -> Receipt | None:
        """Bill a receipt: the charge, what the client owes and what we owe the worker, in
        one transaction, before the frame that carries it goes on (None: it proved
        nothing)."""
        client_key_id = client if isinstance(client, str) else client.key_id
        payments = self.payments
        voucher: tuple[str, VoucherMsg] | None = None
        try:
            with payments.book.transaction() if payments is not None else nullcontext():
                receipt = self.biller.bill(
                    receipt_bytes,
                    request,
                    worker_key=worker.channel.peer.public_key,
                    worker_key_id=worker.key_id,
                    client_key_id=client_key_id,
                    coefficient_milli=worker.coefficient_milli,
                    request_hash=envelope_hash,
                )
                if payments is not None:
                    voucher = self._pay_for(
                        payments, request, receipt, receipt_bytes, worker.key_id
                    )
        except ReceiptError as exc:
            self.bad_receipts_total.inc()
            log.warning(
                "bad receipt from worker %s for %s: %s", worker.key_id, request.request_id, exc
            )
            if isinstance(frame, AnswerEnd):
                raise PeerError("bad_receipt", f"worker receipt rejected: {exc}", False) from exc
            return None
        if voucher is not None and payments is not None:
            # Stored first: if the worker is gone, the next PayChannel carries it.
            payments.workers.send(*voucher)
        if receipt.final:
            self.tokens_total.inc(receipt.prompt_tokens, kind="prompt")
            self.tokens_total.inc(receipt.completion_tokens, kind="completion")
            self.billed_nano_total.inc(
                self.biller.price(receipt, worker.coefficient_milli, request.root_version)
            )
        return receipt

    def _pay_for(
        self,
        payments: ProxyPayments,
        request: Request,
        receipt: Receipt,
        receipt_bytes: bytes,
        worker_key_id: str,
    ) -> tuple[str, VoucherMsg] | None:
        """What the client owes for a receipt and what we owe the worker: the worker's
        channel and voucher, if one is due now."""
        request_id = request.request_id
        amount = receipt_price(self.prices_at(request.root_version), receipt)
        client_channel = self._request_channels.get(request_id)
        if client_channel is None:
            expected = payments.book.expected(request_id)
            client_channel = expected.channel if expected is not None else None
        if client_channel is not None:
            payments.clients.owe(client_channel, request_id, amount, receipt.seq, receipt_bytes)
        return self._owe_worker(payments, worker_key_id, request_id, amount, receipt.seq)

    @staticmethod
    def _owe_worker(
        payments: ProxyPayments, worker_key_id: str, request_id: str, amount: int, seq: int
    ) -> tuple[str, VoucherMsg] | None:
        """Owe a worker its share of `amount` for a request (recorded first); its channel
        and the voucher to send if one is due now (else it goes on the cadence)."""
        worker_channel = payments.worker_channels.get(worker_key_id)
        if worker_channel is None:
            return None
        share = worker_share(amount, payments.link.commission_bp)
        try:
            owed = payments.workers.owe(worker_channel, request_id, share, seq)
        except LedgerError as exc:
            # The worker's channel ran dry: it is owed this until a top-up; the
            # settle loop tops up and the worker invoices it again.
            log.warning("cannot pay worker %s for %s: %s", worker_key_id, request_id, exc)
            return None
        if owed is None or owed.voucher is None:
            return None
        return worker_channel, owed.voucher

    def _expect(self, client: Channel, request: Request, envelope_hash: bytes) -> None:
        """Remember a request before it goes to a worker: a receipt for it can then be
        billed even after a crash of this proxy (the worker invoices it again)."""
        payments = self.payments
        assert payments is not None
        channel = payments.client_channels[client]
        signers = [
            w.channel.peer.public_key
            for key_id in request.candidates
            if (w := self.router.workers.get(key_id)) is not None
        ]
        payments.book.expect(
            request.request_id,
            channel,
            request_hash=envelope_hash,
            signers=signers,
            max_coefficient_milli=request.max_coefficient_milli,
            peer=client.key_id,
        )
        self._request_channels[request.request_id] = channel

    # -- payments ------------------------------------------------------------

    async def _on_client_payment(self, ch: Channel, message: PayChannel | VoucherMsg) -> None:
        payments = self.payments
        if payments is None:
            return
        try:
            if isinstance(message, PayChannel):
                row = await payments.clients.bind(
                    message, payer_node=ch.key_id, payee_node=self.credentials.key_id
                )
                payments.client_channels[ch] = row.channel
                log.info(
                    "client %s pays on channel %s (deposit %d, vouchered %d, owed %d)",
                    ch.key_id,
                    row.channel,
                    row.deposit_nano,
                    row.total_nano,
                    row.owed_nano,
                )
                await ch.send(payments.clients.state(row.channel))
                for request_id, receipt in payments.book.unsettled(row.channel):
                    await ch.send(Invoice(request_id, receipt))
            elif payments.client_channels.get(ch) != message.channel:
                raise PaymentError(f"voucher for channel {message.channel}, not this client's")
            else:
                await payments.clients.accept(message)
        except PaymentError as exc:
            # A client whose channel or vouchers do not hold is cut off.
            log.warning("payment from client %s refused: %s", ch.key_id, exc)
            await _send_quietly(ch, Error("", "bad_payment", str(exc), False))
            await ch.close()

    async def _pay_worker(self, ch: Channel, announce: WorkerAnnounce) -> bool:
        """Open (deploy and fund if needed) the channel to a worker and tell it; False if
        the worker cannot be paid (it is then not routed to)."""
        payments = self.payments
        assert payments is not None
        problem = ""
        if not announce.wallet:
            problem = "this proxy pays workers through channels: the worker needs payments.*"
        else:
            try:
                row = await payments.workers.open(announce.wallet, peer=ch.key_id)
            except PaymentError as exc:
                problem = f"cannot open a channel to the worker: {exc}"
        if problem:
            log.warning("worker %s not admitted: %s", ch.key_id, problem)
            await _send_quietly(ch, Error("", "payment_required", problem, False))
            await ch.close()
            return False
        payments.worker_channels[ch.key_id] = row.channel
        ch.send_nowait(
            payments.workers.announce(
                row.channel, payer_node=self.credentials.key_id, payee_node=ch.key_id
            )
        )
        # Queued right behind the PayChannel (which carries a voucher for all owed):
        # later vouchers follow it on this connection.
        payments.workers.attach(row.channel, ch.send_nowait)
        await ch.drain()
        return True

    async def _on_worker_invoice(self, ch: Channel, invoice: Invoice) -> None:
        """A worker shows a receipt it was not paid for (we crashed, or a voucher was lost)."""
        payments = self.payments
        worker = self.router.workers.get(ch.key_id)
        if payments is None or worker is None:
            return
        request_id = invoice.request_id
        try:
            receipt = verify_receipt(
                invoice.receipt, self.config.network, worker.channel.peer.public_key
            )
        except CryptoError as exc:
            log.warning("bad invoice from worker %s: %s", ch.key_id, exc)
            return
        charge = self.ledger.charge(request_id)
        if charge is not None and charge["worker_key"] != ch.key_id:
            log.warning("worker %s invoiced %s, served by another", ch.key_id, request_id)
            return
        if charge is not None and receipt.seq <= int(str(charge["receipt_seq"])):
            # Billed already: owe the worker its share (a no-op if it was recorded), and
            # pay now what is owed, since the worker asks.
            due = self._owe_worker(
                payments,
                ch.key_id,
                request_id,
                int(str(charge["amount_nano"])),
                int(str(charge["receipt_seq"])),
            )
            if due is not None:
                payments.workers.send(*due)
            self._pay_worker_now(payments, ch.key_id)
            return
        # A receipt we never billed (we crashed first, or the stream broke before it
        # reached us): the work was done for a request we routed to this worker, so it
        # is billed to the client that sent it, which checks it against its own record.
        expected = payments.book.expected(request_id)
        if (
            expected is None
            or worker.channel.peer.public_key not in expected.signers
            or receipt.request_hash != expected.request_hash
        ):
            log.warning(
                "worker %s invoiced %s, which this proxy never sent it", ch.key_id, request_id
            )
            return
        request = Request(request_id, receipt.model, expected.max_coefficient_milli, 0, 0, [], b"")
        billed = self._bill(
            invoice.receipt, request, worker, expected.peer, expected.request_hash, None
        )
        if billed is None:
            return
        log.info("billed %s from the worker's invoice", request_id)
        self._pay_worker_now(payments, ch.key_id)
        for client, channel in payments.client_channels.items():
            if channel == expected.channel:
                with suppress(WireError):
                    client.send_nowait(Invoice(request_id, invoice.receipt))

    @staticmethod
    def _pay_worker_now(payments: ProxyPayments, worker_key_id: str) -> None:
        """The worker asks (an invoice): voucher what we owe it now, not on the cadence."""
        worker_channel = payments.worker_channels.get(worker_key_id)
        if worker_channel is not None:
            payments.workers.flush(worker_channel)

    async def _pay_up(self) -> None:
        """At stop, before the connections close: give clients a moment to pay what they
        owe on their cadence (one that stops too pays as it stops), then pay workers all
        we owe them, their share of that included."""
        payments = self.payments
        assert payments is not None
        waits = [
            payments.clients.collect(channel, client.send_nowait)
            for client, channel in payments.client_channels.items()
        ]
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), COLLECT_AT_STOP_S)
        payments.workers.stop()

    async def settle(self, *, final: bool = False) -> None:
        """Redeem client vouchers by threshold (all at exit); top up worker channels."""
        payments = self.payments
        if payments is None:
            return
        await payments.clients.settle(final=final)
        age = 2 * self.config.payments.settle_interval_s
        for client, channel in list(payments.client_channels.items()):
            for invoice in payments.clients.overdue(channel, age):
                await _send_quietly(client, invoice)
        if not final:
            for channel in list(payments.worker_channels.values()):
                try:
                    await payments.workers.top_up_if_low(channel)
                except PaymentError as exc:
                    log.warning("top-up of %s failed: %s", channel, exc)

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
            "routing_shares": self.router.shares(),
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
            "refused_workers": dict(self.admission.refused),
            "root": None
            if self.follower is None
            else self.follower.status(images_enforced=self.credentials.provider != "none"),
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
                    name: getattr(self.prices, name) for name in self.prices.__struct_fields__
                },
            },
            "payments": None
            if self.payments is None
            else payments_snapshot(self.payments.book, self.payments.link),
        }


async def _send_quietly(channel: Channel, message: Message) -> None:
    with suppress(WireError):
        await channel.send(message)
