"""The worker service: connects out to its proxies and is paid for what it answers.

The worker dials each proxy (so it can sit behind NAT), announces its models,
price coefficient and capacity, then hands every `Request` to a task of its
own (`serving.py`: open, run the backend, seal, sign receipts). It records what
each receipt earns on the proxy's payment channel, and reconnects by itself
when a proxy goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from ..config import WorkerConfig
from ..crypto.errors import ReceiptError
from ..crypto.kept_receipts import keep_receipt, sign_kept_receipt
from ..crypto.receipts import Receipt
from ..crypto.sealing import OpenSessions
from ..node import NodeCredentials, peer_policy
from ..payments.errors import PaymentError
from ..payments.journal import JournaledBook
from ..payments.sides import PayeeSide, receipt_price, worker_share
from ..payments.turns import TurnWrites
from ..pricing import Prices
from ..registry.follower import RootFollower, request_prices
from ..registry.rules import Refusal, RootRules, wanted_proxies
from ..wire.messages import (
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
from .backends.base import Backend
from .links import LinkSet, ProxyLink
from .receipt_seqs import ReceiptSeqs
from .serving import RequestServing, send_quietly
from .stats import WorkerStats
from .status import worker_status
from .verifying import VerifyingBackend

log = logging.getLogger(__name__)

# After a proxy refused us, wait this long before asking it again (a root change
# that lets us in is seen by the proxy within its poll interval).
REFUSED_RETRY_S = 2.0


class Worker:
    """One worker node: one backend, serving one proxy or several (one link each)."""

    def __init__(
        self,
        config: WorkerConfig,
        credentials: NodeCredentials,
        backend: Backend,
        payee: PayeeSide | None = None,
        follower: RootFollower | None = None,
    ) -> None:
        self.config = config
        # With payments on: each proxy pays through a channel; its requests wait for it.
        self.payee = payee
        if payee is not None:
            # Its book keeps a small copy of each receipt, signed again to invoice with.
            payee.book.receipts = self._signed_again
        # The root contract, when followed: proxies from it, refusals by it, prices by version.
        self.follower = follower
        self.credentials = credentials
        # The model backend, able to judge audit evidence too (worker/verifying.py).
        self.backend = VerifyingBackend(backend, credentials.identity.signing_key, config.network)
        # Every run's receipts get seqs no receipt of this worker had (receipt_seqs.py).
        self.seqs = ReceiptSeqs(Path(config.data_dir))
        # Seal sessions clients opened with this worker (one HPKE decapsulation each).
        self.sessions = OpenSessions(credentials.identity.hpke, config.network)
        self.stats = WorkerStats(lambda: float(self.active))
        if payee is not None and isinstance(book := payee.book, JournaledBook):
            self.stats.metrics.gauge(
                "journal_pending_receipts",
                "Receipts journaled and not folded into the book yet.",
                lambda: float(book.pending),
            )
        self.started_at = time.time()
        self.connected = asyncio.Event()
        # Connected to a proxy and, with payments on, paid by it: that proxy routes to us.
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        # Receipts owed this turn of the loop: (channel, request id, amount, seq, bytes).
        self._owed: TurnWrites[tuple[str, str, int, int, bytes]] = TurnWrites(self._write_owed)
        self.serving = RequestServing(
            config,
            credentials,
            self.backend,
            self.sessions,
            self.seqs,
            self.stats,
            owe=self._owe,
            durable=self._durable,
        )
        self.linkset = LinkSet(
            local=lambda: credentials.local,
            policy=peer_policy(config.network, config.tee.allow_untrusted, config.tee),
            session=self._session,
        )
        if follower is not None:
            follower.on_change(self._on_root_change)

    @property
    def links(self) -> list[ProxyLink]:
        return list(self.linkset.links.values())

    @property
    def channel(self) -> Channel | None:
        """The first live proxy connection (the one, with a single proxy)."""
        return next((link.channel for link in self.links if link.channel is not None), None)

    @property
    def pay_channel(self) -> str | None:
        """The payment channel of the first paying proxy (the one, with a single proxy)."""
        return next((link.pay_channel for link in self.links if link.pay_channel), None)

    @property
    def active(self) -> int:
        return sum(len(link.tasks) for link in self.links)

    async def run(self) -> None:
        """Serve every wanted proxy, each reconnecting with backoff, until stopped."""
        rules = self.follower.rules if self.follower is not None else None
        self.linkset.update(self._wanted(rules))
        await self._stop.wait()

    async def _on_root_change(self, rules: RootRules) -> None:
        for link in self.linkset.update(self._wanted(rules)):
            log.info("proxy %s is no longer on the root: dropping it", link.address)
            await self.linkset.close(link)
        for link in self.links:
            if link.channel is not None:
                refusal = self._proxy_refusal(link, link.channel)
                if refusal is not None:
                    log.warning("closing proxy %s: %s", link.address, refusal)
                    link.dropped = str(refusal)
                    await link.channel.close()

    def _wanted(self, rules: RootRules | None) -> dict[str, bytes | None]:
        return wanted_proxies(self.config.proxies, self.config.proxy, rules)

    def _proxy_refusal(self, link: ProxyLink, channel: Channel) -> Refusal | None:
        """Why the root does not let this worker serve that proxy, or None."""
        if self.follower is None:
            return None
        return self.follower.rules.reached_proxy_refusal(
            link.address, link.node_key, channel.peer.public_key, channel.verdict
        )

    def _update_ready(self) -> None:
        if any(link.ready.is_set() for link in self.links):
            self.ready.set()
        else:
            self.ready.clear()
        if any(link.channel is not None for link in self.links):
            self.connected.set()
        else:
            self.connected.clear()

    async def _session(self, link: ProxyLink, channel: Channel) -> None:
        refusal = self._proxy_refusal(link, channel)
        if refusal is not None:
            link.dropped = str(refusal)
            # Checked again at the next root version; until then, no tight redial loop.
            wait_s = self.follower.poll_interval_s if self.follower else 1.0
            await link.dialer.refuse(channel, refusal.reason, str(refusal), wait_s)
            return
        link.dropped = ""
        link.channel = channel
        await channel.send(
            WorkerAnnounce(
                self.backend.models(),
                self.config.coefficient_milli,
                self.config.max_active_requests,
                self.payee.link.address if self.payee is not None else "",
                self.backend.scoring_models(),
                self.backend.features(),
            )
        )
        if self.payee is None:
            link.ready.set()
        self._update_ready()
        await channel.run(lambda ch, message: self._on_message(link, ch, message))
        link.ready.clear()
        link.channel = None
        link.pay_channel = None
        link.cancel_tasks()
        self._update_ready()
        if link.dropped:
            await asyncio.sleep(REFUSED_RETRY_S)

    async def renew_certificate(self) -> None:
        """Issue a fresh certificate; the proxies hand it to clients from now on."""
        certificate = self.credentials.renew()
        for link in self.links:
            if link.channel is not None:
                await link.channel.renew(certificate)

    def snapshot(self) -> dict[str, object]:
        """Everything /jsonstats shows (worker/status.py)."""
        return worker_status(self)

    async def stop(self) -> None:
        self._stop.set()
        await self.linkset.stop()
        await self.backend.aclose()
        # What answers cut short by the stop owe is in the book before it closes.
        self._owed.flush()

    async def _on_message(self, link: ProxyLink, channel: Channel, message: Message) -> None:
        if isinstance(message, Request):
            if self.payee is not None:
                refusal = await self.payee.admit(link.pay_channel)
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
            tasks = link.tasks
            task = asyncio.create_task(self.serving.serve(channel, message, link.pay_channel))
            tasks[request_id] = task
            task.add_done_callback(lambda _t: tasks.pop(request_id, None))
        elif isinstance(message, Cancel):
            running = link.tasks.get(message.request_id)
            if running is not None:
                self.stats.cancelled += 1
                running.cancel()
        elif isinstance(message, PayChannel | VoucherMsg):
            await self._on_payment(link, channel, message)
        elif isinstance(message, Error) and not message.request_id:
            # The proxy refuses us (the root does not list our image or models, or
            # our stake is too low): say why in /jsonstats, and do not knock again at once.
            link.dropped = f"{message.code}: {message.message}"
            log.warning("proxy %s: %s", link.address, link.dropped)
        else:
            log.debug("ignoring %s from the proxy", type(message).__name__)

    async def _on_payment(
        self, link: ProxyLink, channel: Channel, message: PayChannel | VoucherMsg
    ) -> None:
        payee = self.payee
        if payee is None:
            return
        try:
            if isinstance(message, PayChannel):
                row = await payee.bind(
                    message, payer_node=channel.key_id, payee_node=self.credentials.key_id
                )
                link.pay_channel = row.channel
                link.ready.set()
                self._update_ready()
                log.info(
                    "proxy %s pays on channel %s (deposit %d, vouchered %d, owed %d)",
                    link.address,
                    row.channel,
                    row.deposit_nano,
                    row.total_nano,
                    row.owed_nano,
                )
                await channel.send(payee.state(row.channel))
                # What a crash or a lost connection left unpaid: its receipts again.
                for request_id, receipt in payee.book.unsettled(row.channel):
                    await channel.send(Invoice(request_id, receipt))
            elif message.channel != link.pay_channel:
                raise PaymentError(f"voucher for channel {message.channel}, not this proxy's")
            else:
                await payee.accept(message)
        except PaymentError as exc:
            # A payer whose channel or vouchers do not hold is cut off.
            log.warning("payment from proxy %s refused: %s", channel.key_id, exc)
            await send_quietly(channel, Error("", "bad_payment", str(exc), False))
            await channel.close()

    async def collect(self, timeout_s: float) -> None:
        """Before the connections close: ask each proxy for what it owes on its cadence."""
        payee = self.payee
        self._owed.flush()
        if payee is None:
            return
        for link in self.links:
            if link.channel is not None and link.pay_channel is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        payee.collect(link.pay_channel, link.channel.send_nowait), timeout_s
                    )

    async def settle(self, *, final: bool = False) -> None:
        """Redeem by threshold (everything when `final`); show each proxy what it left
        unpaid for a while (receipts of answers cut while they were in flight)."""
        payee = self.payee
        if payee is None:
            return
        await payee.settle(final=final)
        if final:
            return
        for link in self.links:
            channel, pay_channel = link.channel, link.pay_channel
            if channel is None or pay_channel is None:
                continue
            for invoice in payee.overdue(pay_channel, 2 * self.config.payments.settle_interval_s):
                await send_quietly(channel, invoice)

    def prices_for(self, request: Request) -> Prices:
        """The prices a request is paid at: its root version's when the root is followed."""
        own = self.payee.link.prices if self.payee is not None else None
        return request_prices(
            self.follower, own, request.root_version, request.tier, request.replicas
        )

    def _owe(
        self,
        pay_channel: str | None,
        receipt: Receipt | None,
        receipt_bytes: bytes | None,
        request: Request,
    ) -> None:
        """Record what a receipt entitles this worker to; the receipt leaves once it is
        on disk (`_durable`, the writes of one loop turn share a commit)."""
        payee = self.payee
        if payee is None or receipt is None or receipt_bytes is None or pay_channel is None:
            return
        price = receipt_price(self.prices_for(request), receipt)
        amount = worker_share(price, payee.link.commission_bp)
        # Written with the turn's other receipts at its end (payments/turns.py); the book
        # keeps the receipt's values only, and signs it again to invoice with.
        self._owed.add(
            (pay_channel, receipt.request_id, amount, receipt.seq, keep_receipt(receipt))
        )

    def _write_owed(self, owed: list[tuple[str, str, int, int, bytes]]) -> None:
        """What one turn's receipts entitle this worker to, in one write."""
        payee = self.payee
        assert payee is not None
        # One journal write for all (payments/journal.py); only what the book would
        # refuse goes one by one, which says why.
        if payee.owe_new(owed):
            return
        with payee.book.transaction():
            for pay_channel, request_id, amount, seq, receipt_bytes in owed:
                payee.owe(pay_channel, request_id, amount, seq, receipt_bytes)

    def _signed_again(self, request_id: str, kept: bytes) -> bytes | None:
        """The receipt the book kept a copy of (`_owe`), to invoice with; None if it
        cannot be made again (it is then not invoiced)."""
        key = self.credentials.identity.signing_key
        try:
            return sign_kept_receipt(key, self.config.network, request_id, kept)
        except ReceiptError as exc:
            log.warning("cannot invoice request %s: %s", request_id, exc)
            return None

    async def _durable(self) -> None:
        """Return once what receipts were recorded is on disk (they leave after)."""
        if self.payee is not None:
            await self._owed.written()
            await self.payee.book.durable()
