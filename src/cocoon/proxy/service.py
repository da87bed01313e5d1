"""The proxy service: the connections of workers and clients.

The proxy never holds a prompt or an answer in clear: it sees the routing
fields (model, price bound, candidate workers), sizes and timings, and the
receipts it bills from. This module accepts workers (admitted by the root,
`admission.py`) and clients, tells clients which workers there are, and
hands each message on: a client's `Request` to the relay (`relay.py`, a task
per request), payment messages and workers' invoices to the settlement
(`settlement.py`), which bills every receipt, owes and pays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from ..config import ProxyConfig, split_address
from ..metrics import Registry
from ..node import NodeCredentials, peer_policy
from ..payments.ledger import Ledger
from ..registry.follower import RootFollower
from ..registry.rules import Refusal, RootRules
from ..wire.endpoints import serve
from ..wire.errors import WireError
from ..wire.messages import (
    DIRECTORY_PUSH,
    Cancel,
    Directory,
    DirectoryRequest,
    Error,
    Invoice,
    Message,
    PayChannel,
    PaymentState,
    Report,
    Request,
    VoucherMsg,
    WorkerAnnounce,
    WorkerEntry,
    WorkerLoad,
)
from ..wire.transport import Channel
from .admission import WorkerAdmission
from .inflight import InflightRegistry
from .payments import ProxyPayments, journals_status
from .relay import Relay, send_quietly
from .reports import ReportDesk
from .router import Router
from .settlement import Settlement
from .status import proxy_status
from .worker_state import WorkerInfo

log = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT_S = 10.0


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
        if follower is not None:
            follower.on_change(self._on_root_change)
        self.router = Router()
        # Reports of failed audits from clients: the proxy's reputation of its workers.
        self.reports = ReportDesk(config.network, ledger)
        self.router.reputation = self.reports.score
        self.router.reputation_threshold = self.reports.reputation.threshold
        self.inflight = InflightRegistry()
        self.clients: dict[Channel, dict[str, asyncio.Task[None]]] = {}
        self.server: asyncio.Server | None = None
        self.port = 0
        self.started_at = time.time()
        self.metrics = m = Registry("cocoon_proxy")
        # Every receipt goes to the settlement; the relay only moves frames.
        self.settlement = Settlement(
            config, credentials.key_id, ledger, payments, follower, self.router, m
        )
        self.relay = Relay(config, self.router, self.inflight, self.settlement, m)
        self.biller = self.settlement.biller
        # With payments on, prices are the root contract's; else the configured ones.
        self.prices = self.settlement.prices
        self.refused_total = m.counter("refused_connections_total", "Handshakes refused.")
        m.gauge("workers", "Connected workers.", lambda: float(len(self.router.workers)))
        m.gauge("clients", "Connected clients.", lambda: float(len(self.clients)))
        m.gauge("active_requests", "Requests running.", lambda: float(self.inflight.running))
        m.gauge(
            "journal_pending_requests",
            "Requests on record in the journal, not folded into the book yet.",
            lambda: self._journal_pending("requests_journal"),
        )
        m.gauge(
            "journal_pending_bills",
            "Bills in the journal, not folded into the ledger and book yet.",
            lambda: self._journal_pending("bills_journal"),
        )

    def _journal_pending(self, journal: str) -> float:
        return float((journals_status(self.payments)[journal] or {}).get("pending", 0))

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
        await self.settlement.pay_up()
        channels = [w.channel for w in self.router.workers.values()] + list(self.clients)
        for channel in channels:
            await channel.close()
        if self.server is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def settle(self, *, final: bool = False) -> None:
        """Redeem client vouchers by threshold (all at exit); top up worker channels."""
        await self.settlement.settle(final=final)

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
                    await send_quietly(ch, Error("", admitted.reason, admitted.message, False))
                    await ch.close()
                    return
                if not await self.settlement.open_worker(ch, message):
                    return
                self._announces[ch.key_id] = message
                self.reports.know(ch.key_id, ch.peer.public_key)
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
                await self.settlement.on_worker_invoice(ch, message)
            elif isinstance(message, PaymentState):
                self.settlement.on_worker_state(ch, message)
            elif isinstance(message, Error) and not message.request_id:
                log.warning("worker %s: %s: %s", ch.key_id, message.code, message.message)
            else:
                log.debug("ignoring %s from worker %s", type(message).__name__, ch.key_id)

        try:
            await channel.run(on_message)
        finally:
            self.settlement.worker_left(channel)
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
                task = asyncio.create_task(self.relay.route(ch, message))
                tasks[request_id] = task
                task.add_done_callback(lambda _t: tasks.pop(request_id, None))
            elif isinstance(message, Cancel):
                running = tasks.get(message.request_id)
                if running is not None:
                    running.cancel()
            elif isinstance(message, DirectoryRequest):
                await ch.send(self._directory(message))
            elif isinstance(message, PayChannel | VoucherMsg):
                await self.settlement.on_client_payment(ch, message)
            elif isinstance(message, Report):
                self.reports.take(ch.peer.public_key, message.report)
            else:
                log.debug("ignoring %s from client %s", type(message).__name__, ch.key_id)

        terms = self.settlement.terms()
        if terms is not None:
            await channel.send(terms)
        try:
            await channel.run(on_message)
        finally:
            del self.clients[channel]
            self.settlement.client_left(channel)
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
                await send_quietly(
                    worker.channel, Error("", verdict.reason, verdict.message, False)
                )
                await worker.channel.close()
            elif verdict.models != worker.models:
                worker.models = verdict.models
                changed = True
        if changed:
            await self._push_directory()

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
                sorted(set(self._announces[w.key_id].scoring) & w.models)
                if w.key_id in self._announces
                else [],
                self.reports.milli(w.key_id),
                features={
                    model: features
                    for model, features in self._announces[w.key_id].features.items()
                    if model in w.models
                }
                if w.key_id in self._announces
                else {},
            )
            for w in self.router.workers.values()
            if not request.model or request.model in w.models
        ]
        return Directory(request.seq, entries)

    # -- status --------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Everything /jsonstats and the status page show (status.py)."""
        return proxy_status(self)
