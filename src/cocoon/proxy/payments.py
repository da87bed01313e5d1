"""The proxy's two kinds of channel: clients pay it, it pays its workers (DESIGN §6).

What happens on the channels themselves: a client binds its channel and
sends vouchers; a channel is opened to each worker at its announce, the
worker is owed its share of what it served and paid by voucher on a cadence
(at once when it invoices); at stop clients are asked to pay up and workers
are paid all we owe; periodically client vouchers are redeemed and worker
channels topped up. Which receipt owes what is decided in `settlement.py`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass, field

from ..payments.bill_journal import ProxyBook
from ..payments.book import PaymentBook
from ..payments.errors import LedgerError, PaymentError
from ..payments.expects_journal import JournaledExpects
from ..payments.ledger import ROW_REQUEST_ID, ROW_SEQ, ChargeRow
from ..payments.link import ChainLink
from ..payments.sides import COLLECT_AT_STOP_S, Owed, PayeeSide, PayerSide, worker_share
from ..wire.errors import WireError
from ..wire.messages import Error, PayChannel, PaymentTerms, VoucherMsg, WorkerAnnounce
from ..wire.transport import Channel
from .funding import FundingPolicy

log = logging.getLogger(__name__)


@dataclass
class ProxyPayments:
    """Payee of client channels, payer of worker channels, one book for both."""

    book: PaymentBook
    link: ChainLink
    clients: PayeeSide
    workers: PayerSide
    # Which channel pays for (client connection) / is paid from (worker key id).
    client_channels: dict[Channel, str] = field(default_factory=dict)
    worker_channels: dict[str, str] = field(default_factory=dict)
    # How much a worker's channel holds: a little at first, more as it earns (None:
    # within the configured `payments.deposit_nano`).
    funding_policy: FundingPolicy | None = None
    # Top-ups of worker channels under way (one a channel), started as a channel ran low.
    topping_up: dict[str, asyncio.Task[int]] = field(default_factory=dict)

    @property
    def funding(self) -> FundingPolicy:
        return self.funding_policy or FundingPolicy.within(self.workers.deposit_nano)

    # -- clients -------------------------------------------------------------

    def terms(self) -> PaymentTerms:
        """What a client is told when it connects: where and how to pay."""
        link = self.link
        return PaymentTerms(
            link.address, link.network_id, link.root_address, self.clients.max_credit_nano
        )

    async def on_client_payment(
        self, ch: Channel, message: PayChannel | VoucherMsg, node_key_id: str
    ) -> None:
        """A client binds its channel (it learns its state and what it was not invoiced
        for yet) or sends a voucher."""
        try:
            if isinstance(message, PayChannel):
                row = await self.clients.bind(message, payer_node=ch.key_id, payee_node=node_key_id)
                self.client_channels[ch] = row.channel
                log.info(
                    "client %s pays on channel %s (deposit %d, vouchered %d, owed %d)",
                    ch.key_id,
                    row.channel,
                    row.deposit_nano,
                    row.total_nano,
                    row.owed_nano,
                )
                await ch.send(self.clients.state(row.channel))
                for request_id, receipt in self.book.unsettled(row.channel):
                    await ch.send(self.book.invoice(request_id, receipt))
            elif self.client_channels.get(ch) != message.channel:
                raise PaymentError(f"voucher for channel {message.channel}, not this client's")
            else:
                await self.clients.accept(message)
        except PaymentError as exc:
            # A client whose channel or vouchers do not hold is cut off.
            log.warning("payment from client %s refused: %s", ch.key_id, exc)
            with suppress(WireError):
                await ch.send(Error("", "bad_payment", str(exc), False))
            await ch.close()

    # -- workers -------------------------------------------------------------

    async def open_worker(self, ch: Channel, announce: WorkerAnnounce, node_key_id: str) -> bool:
        """Open (deploy and fund if needed) the channel to a worker and tell it; False if
        the worker cannot be paid (it is then not routed to).

        Called only for a worker that passed the proxy's policy (attestation at the
        handshake, then the root and its stake); a new channel gets the funding
        policy's small first deposit (proxy/funding.py)."""
        problem = ""
        if not announce.wallet:
            problem = "this proxy pays workers through channels: the worker needs payments.*"
        else:
            try:
                row = await self.workers.open(
                    announce.wallet, peer=ch.key_id, deposit_nano=self.funding.initial_nano
                )
            except PaymentError as exc:
                problem = f"cannot open a channel to the worker: {exc}"
        if problem:
            log.warning("worker %s not admitted: %s", ch.key_id, problem)
            with suppress(WireError):
                await ch.send(Error("", "payment_required", problem, False))
            await ch.close()
            return False
        self.worker_channels[ch.key_id] = row.channel
        ch.send_nowait(
            self.workers.announce(row.channel, payer_node=node_key_id, payee_node=ch.key_id)
        )
        # Queued right behind the PayChannel (which carries a voucher for all owed):
        # later vouchers follow it on this connection.
        self.workers.attach(row.channel, ch.send_nowait)
        await ch.drain()
        return True

    def worker_left(self, ch: Channel) -> None:
        """Vouchers for a gone worker wait in the book; its next PayChannel carries them."""
        if ch.key_id in self.worker_channels:
            self.workers.detach(self.worker_channels[ch.key_id], ch.send_nowait)

    def owe_worker(
        self, worker_key_id: str, request_id: str, amount_nano: int, seq: int
    ) -> tuple[str, VoucherMsg] | None:
        """Owe a worker its share of `amount_nano` for a request (recorded first); its
        channel and the voucher to send if one is due now (else it goes on the cadence)."""
        worker_channel = self.worker_channels.get(worker_key_id)
        if worker_channel is None:
            return None
        share = worker_share(amount_nano, self.link.commission_bp)
        try:
            owed = self.workers.owe(worker_channel, request_id, share, seq)
        except LedgerError as exc:
            # The worker's channel ran dry: it is owed this until a top-up; the
            # settle loop tops up and the worker invoices it again.
            log.warning("cannot pay worker %s for %s: %s", worker_key_id, request_id, exc)
            return None
        if owed is None:
            return None
        self._top_up_if_low(worker_channel)
        if owed.voucher is None:
            return None
        return worker_channel, owed.voucher

    def owe_workers_new(
        self, items: list[tuple[str, str, int, int]]
    ) -> list[tuple[str, VoucherMsg]] | None:
        """`owe_worker` for many requests' first receipts at once (worker key id, request
        id, amount, seq): the vouchers due. None, and nothing written, if they cannot
        all go at once (`PayerSide.owe_new`): owe them one by one."""
        debts = self._shares(items)
        owed = self.workers.owe_new(debts) if debts is not None else None
        return None if owed is None else self._due(owed)

    def bill_new(
        self, bills: list[tuple[ChargeRow, str | None, str, int]]
    ) -> list[tuple[str, VoucherMsg]] | None:
        """New requests' first receipts, each (charge, client's channel, worker key id,
        amount), billed through the book's journal (payments/bill_journal.py): the
        charge, the client's debt and the worker's share of each in one record. The
        vouchers due; None, and nothing written, where the journal cannot take them:
        bill them in a transaction. OSError if the journal could not be written."""
        book = self.book
        if not isinstance(book, ProxyBook):
            return None
        shares = self._shares(
            [
                (worker, charge[ROW_REQUEST_ID], amount, charge[ROW_SEQ])
                for charge, _, worker, amount in bills
            ]
        )
        if shares is None:
            return None
        entries = [
            (charge, channel or "", amount, share[0], share[2])
            for (charge, channel, _, amount), share in zip(bills, shares, strict=True)
        ]
        if not book.bill_new(entries):
            return None
        self.clients.owed({bill[1] for bill in bills if bill[1] is not None})
        return self._due(self.workers.owed_now({share[0] for share in shares if share[2]}))

    def _shares(
        self, items: list[tuple[str, str, int, int]]
    ) -> list[tuple[str, str, int, int]] | None:
        """Workers' shares of what requests cost (worker key id, request id, amount, seq):
        (its channel, request id, share, seq) each; None if a worker has no channel."""
        shares = []
        for worker_key_id, request_id, amount_nano, seq in items:
            worker_channel = self.worker_channels.get(worker_key_id)
            if worker_channel is None:
                return None
            share = worker_share(amount_nano, self.link.commission_bp)
            shares.append((worker_channel, request_id, share, seq))
        return shares

    def _due(self, owed: dict[str, Owed]) -> list[tuple[str, VoucherMsg]]:
        """Channels to workers that owe more: top up those running low; the vouchers due."""
        for channel in owed:
            self._top_up_if_low(channel)
        return [(channel, due.voucher) for channel, due in owed.items() if due.voucher is not None]

    def _top_up_if_low(self, channel: str) -> None:
        """A worker's channel ran low as we owed it: top it up now, not at the next settle
        tick. Under load a 1 TON channel's last quarter lasted about a second, and the
        tick came every 5 s: until it did, the worker refused requests (HTTP 402 to the
        app, at c=64 with payments on)."""
        if channel in self.topping_up:
            return
        row = self.book.channel(channel)
        if row is None or not self.funding.low(row):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a tool, a test driving the book): the settle tick tops up
        task = loop.create_task(self._top_up_quietly(channel))
        self.topping_up[channel] = task
        task.add_done_callback(lambda _: self.topping_up.pop(channel, None))

    async def _top_up_quietly(self, channel: str) -> int:
        """A top-up that fails is logged (the next low owe or settle tick tries again);
        nothing waits on it to fail."""
        try:
            return await self.top_up_worker(channel)
        except Exception as exc:  # the chain, the link closing at stop: never the caller's
            log.warning("top-up of %s failed: %s", channel, exc)
            return 0

    def pay_worker_now(self, worker_key_id: str) -> None:
        """The worker asks (an invoice): voucher what we owe it now, not on the cadence."""
        worker_channel = self.worker_channels.get(worker_key_id)
        if worker_channel is not None:
            self.workers.flush(worker_channel)

    # -- settling ------------------------------------------------------------

    async def pay_up(self) -> None:
        """At stop, before the connections close: give clients a moment to pay what they
        owe on their cadence (one that stops too pays as it stops), then pay workers all
        we owe them, their share of that included."""
        waits = [
            self.clients.collect(channel, client.send_nowait)
            for client, channel in self.client_channels.items()
        ]
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), COLLECT_AT_STOP_S)
        self.workers.stop()

    async def settle(self, *, final: bool, overdue_after_s: float) -> None:
        """Redeem client vouchers by threshold (all at exit), invoice clients again what
        they owe for longer than `overdue_after_s`; top up worker channels."""
        await self.clients.settle(final=final)
        for client, channel in list(self.client_channels.items()):
            for invoice in self.clients.overdue(channel, overdue_after_s):
                with suppress(WireError):
                    await client.send(invoice)
        if not final:
            for channel in list(self.worker_channels.values()):
                under_way = self.topping_up.get(channel)
                if under_way is not None:
                    await asyncio.wait([under_way])
                    continue
                await self._top_up_quietly(channel)

    async def top_up_worker(self, channel: str) -> int:
        """Top up a worker's channel that runs low, by what the worker has earned on it
        (proxy/funding.py); the amount added (0: none)."""
        row = self.book.channel(channel)
        amount = self.funding.top_up_nano(row) if row is not None else 0
        if amount and await self.workers.top_up(channel, amount):
            return amount
        return 0


def journals_status(payments: ProxyPayments | None) -> dict[str, dict[str, int] | None]:
    """The journals of requests on record (payments/expects_journal.py) and of bills
    (payments/bill_journal.py), for status pages and metrics; each None without
    payments."""
    book = payments.book if payments is not None else None
    return {
        "requests_journal": book.journal_status() if isinstance(book, JournaledExpects) else None,
        "bills_journal": book.bills_status() if isinstance(book, ProxyBook) else None,
    }
