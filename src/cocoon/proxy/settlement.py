"""Settlement: where every receipt of a request goes, once (DESIGN §6).

A worker's receipt proves what it served. Taking one is verifying it at once,
then one atomic write at the end of its event-loop turn, with the turn's other
receipts (`bills.py`; the frame leaves once it is on disk): the charge
(`Biller`), what the client owes on its channel, the worker's share (less our
commission), and the voucher that pays the worker now if one is due. The relay
only moves frames:
it opens a `Tab` for a request before the request leaves and gives the tab
each receipt as its frame goes by; the tab decides which ones are verified
(every final one, a partial one at most once a second; one not billed is
held back from the client) and bills the latest partial one when an attempt
ends without a final one (`tab.py`).

A worker's invoice (a receipt it was not paid for: a crash of ours, a lost
voucher) is settled here the same way. The proxy hands this object every
payment message too; what happens on the channels themselves (binding,
vouchers, opening, top-ups) is in `payments.py`. Prices are those of the
root version a request was sealed under.
"""

from __future__ import annotations

import logging
from contextlib import suppress

from ..config import ProxyConfig
from ..crypto.errors import CryptoError
from ..crypto.receipts import Receipt, verify_receipt
from ..metrics import Registry
from ..payments.errors import LedgerError
from ..payments.ledger import Ledger
from ..payments.rows import ExpectedRow, expected_row
from ..payments.turns import TurnWrites
from ..pricing import Prices
from ..registry.follower import RootFollower, request_prices
from ..wire.errors import WireError
from ..wire.messages import (
    Error,
    Invoice,
    PayChannel,
    PaymentState,
    PaymentTerms,
    Request,
    VoucherMsg,
    WorkerAnnounce,
)
from ..wire.transport import Channel
from .billing import Biller
from .bills import Bills
from .equivocation import Equivocations
from .payments import ProxyPayments
from .router import Router
from .tab import Tab
from .worker_state import WorkerInfo

log = logging.getLogger(__name__)


class _Expected:
    """A request to put on record, and whether it was new once written."""

    __slots__ = ("new", "row")

    def __init__(self, row: ExpectedRow) -> None:
        self.row = row
        self.new = False


class Settlement:
    """Bills receipts, owes clients' debts and workers' shares, pays with vouchers."""

    def __init__(
        self,
        config: ProxyConfig,
        node_key_id: str,
        ledger: Ledger,
        payments: ProxyPayments | None,
        follower: RootFollower | None,
        router: Router,
        metrics: Registry,
    ) -> None:
        self.config = config
        self.node_key_id = node_key_id
        self.ledger = ledger
        self.payments = payments
        self.follower = follower
        self.router = router
        # With payments on, prices are the root contract's; else the configured ones.
        self.prices = payments.link.prices if payments is not None else config.prices
        self.biller = Biller(config.network, config.receipt_signature_every)
        # A worker's contradicting receipts, proven on its stake.
        self.equivocations = Equivocations(
            follower, payments.link.wallet if payments is not None else None
        )
        # Requests to put on record, written together at the end of the loop's turn.
        self._expects: TurnWrites[_Expected] = TurnWrites(self._write_expects)
        # Receipts verified as they come, billed together at the end of the loop's turn.
        self.bills = Bills(ledger, payments, self.biller, self.prices_for, metrics)
        self.bad_receipts_total = self.bills.bad_receipts_total

    def prices_for(self, request: Request) -> Prices:
        """The prices a request is billed at: those of the root version its client sealed
        it under (a change on the root applies to new requests only)."""
        return request_prices(
            self.follower, self.prices, request.root_version, request.tier, request.replicas
        )

    # -- requests ------------------------------------------------------------

    async def open(
        self, client: Channel, request: Request, envelope_hash: bytes, now: float
    ) -> Tab | Error:
        """Take a request on account before it goes to a worker; or the Error refusing it."""
        request_id = request.request_id
        if self.follower is not None and request.root_version > self.follower.version:
            # Sealed under a root we have not read yet: bill it at that version's prices.
            with suppress(Exception):
                await self.follower.ensure(request.root_version)
        if self.ledger.billed(request_id):
            return Error(
                request_id,
                "duplicate_request_id",
                "this request id was already answered (in full or in part) and billed;"
                " send a new id to ask again",
                False,
            )
        payments = self.payments
        channel = None
        if payments is not None:
            refusal = await payments.clients.admit(payments.client_channels.get(client))
            if refusal is not None:
                log.info("request %s refused: %s", request_id, refusal[1])
                return Error(request_id, refusal[0], refusal[1], False)
            expected = self._expect(payments, client, request, envelope_hash)
            try:
                await self._expects.written()
            except (OSError, LedgerError) as exc:
                log.warning("request %s not put on record: %s", request_id, exc)
                return Error(
                    request_id, "billing_failed", "the proxy could not put it on record", False
                )
            channel = expected.row[1] if expected.new else None
            if channel is None:
                # Sent before this proxy restarted: what its first run cost is billed from
                # the worker's receipts (the worker invoices them); a second run would bill
                # twice.
                return Error(
                    request_id,
                    "duplicate_request_id",
                    "this request id was sent before the proxy restarted; send it with a new id",
                    False,
                )
            # The request leaves for a worker only once it is on record: on disk as the
            # turn's journal write returns (payments/expects_journal.py).
            await payments.book.expects_durable()
        return Tab(self, request, client.key_id, envelope_hash, channel, now)

    async def durable(self) -> None:
        """Return once every charge and debt written so far is on disk: the writes of one
        turn of the event loop share a commit (payments/commits.py)."""
        await self.bills.written()
        await self.ledger.durable()

    def _expect(
        self, payments: ProxyPayments, client: Channel, request: Request, envelope_hash: bytes
    ) -> _Expected:
        """Remember a request before it goes to a worker: a receipt for it can then be
        billed even after a crash of this proxy (the worker invoices it again). Written
        with the turn's other requests at its end (`_write_expects`); whether it was new
        (a new request id is the rule: one write, no read first) is known after."""
        signers = [
            w.channel.peer.public_key
            for key_id in request.candidates
            if (w := self.router.workers.get(key_id)) is not None
        ]
        expected = _Expected(
            expected_row(
                request.request_id,
                payments.client_channels[client],
                request_hash=envelope_hash,
                signers=signers,
                max_coefficient_milli=request.max_coefficient_milli,
                peer=client.key_id,
                auth=request.auth,
            )
        )
        self._expects.add(expected)
        return expected

    def _write_expects(self, expects: list[_Expected]) -> None:
        """A turn's requests on record: all in one statement when all are new (the rule),
        else one by one (a request id sent before, or twice in this turn)."""
        assert self.payments is not None
        book = self.payments.book
        if book.expect_new([expected.row for expected in expects]):
            for expected in expects:
                expected.new = True
            return
        for expected in expects:
            expected.new = book.expect_new([expected.row])

    def bill(
        self, receipt_bytes: bytes, worker: WorkerInfo, tab: Tab, *, end: bool = False
    ) -> Receipt | None:
        """Verify a receipt now and bill it at the end of this turn (`bills.py`); None: it
        proved nothing (a bad one that ends the answer raises PeerError)."""
        return self.bills.bill(receipt_bytes, worker, tab, end=end)

    # -- payment messages ----------------------------------------------------

    def terms(self) -> PaymentTerms | None:
        """What a client is told when it connects: where and how to pay (None: free)."""
        return self.payments.terms() if self.payments is not None else None

    def client_left(self, client: Channel) -> None:
        if self.payments is not None:
            self.payments.client_channels.pop(client, None)

    async def on_client_payment(self, ch: Channel, message: PayChannel | VoucherMsg) -> None:
        if self.payments is not None:
            await self.payments.on_client_payment(ch, message, self.node_key_id)

    async def open_worker(self, ch: Channel, announce: WorkerAnnounce) -> bool:
        """A channel to pay a worker through; False if it cannot be paid (it is then not
        routed to). True without payments."""
        if self.payments is None:
            return True
        return await self.payments.open_worker(ch, announce, self.node_key_id)

    def worker_left(self, ch: Channel) -> None:
        if self.payments is not None:
            self.payments.worker_left(ch)

    def on_worker_state(self, ch: Channel, message: PaymentState) -> None:
        log.info(
            "worker %s: channel %s owed %d, vouchered %d",
            ch.key_id,
            message.channel,
            message.owed_nano,
            message.paid_nano,
        )
        if self.payments is not None:
            self.payments.workers.heard(message)

    async def on_worker_invoice(self, ch: Channel, invoice: Invoice) -> None:
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
        if (
            charge is not None
            and receipt.seq == int(str(charge["receipt_seq"]))
            and self.equivocations.compare(
                bytes(charge["receipt"]),  # type: ignore[call-overload]
                invoice.receipt,
                worker.channel.peer.public_key,
                worker.operator if worker.operator != ch.key_id else "",
            )
        ):
            return  # proven and sent to its stake; nothing more is owed for it
        if charge is not None and receipt.seq <= int(str(charge["receipt_seq"])):
            # Billed already: owe the worker its share (a no-op if it was recorded), and
            # pay now what is owed, since the worker asks.
            due = payments.owe_worker(
                ch.key_id,
                request_id,
                int(str(charge["amount_nano"])),
                int(str(charge["receipt_seq"])),
            )
            if due is not None:
                payments.workers.send(*due)
            payments.pay_worker_now(ch.key_id)
            return
        if charge is not None and int(str(charge["final"])):
            # Past the final receipt, which it signed and was billed: no receipt follows
            # a final one, and the ledger keeps the final one, so paying this one
            # would pay for work no charge shows.
            log.warning("worker %s invoiced %s past its final receipt", ch.key_id, request_id)
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
        tab = Tab(self, request, expected.peer, expected.request_hash, expected.channel, 0.0)
        # A later receipt of a request billed before (a stream cut on its way here): its
        # rows are there, so it is billed by what it adds, in a transaction. As a new
        # bill it would be owed in full in memory until a fold, and a voucher to the
        # worker signed from memory meanwhile would pay the earlier share twice.
        tab.billed = charge is not None
        # The answer may be on its way here still: its relay bills by what it adds.
        self.bills.invoiced(request_id)
        if self.bill(invoice.receipt, worker, tab) is None:
            return
        self.bills.flush()
        if tab.failure is not None:
            return
        log.info("billed %s from the worker's invoice", request_id)
        payments.book.commit()  # on disk before the client is invoiced (rare: no batching)
        payments.pay_worker_now(ch.key_id)
        for client, channel in payments.client_channels.items():
            if channel == expected.channel:
                with suppress(WireError):
                    client.send_nowait(payments.book.invoice(request_id, invoice.receipt))

    # -- settling ------------------------------------------------------------

    async def pay_up(self) -> None:
        """At stop: clients pay what they owe, we pay workers all we owe them."""
        self.bills.flush()
        if self.payments is not None:
            await self.payments.pay_up()

    async def settle(self, *, final: bool = False) -> None:
        """Redeem client vouchers by threshold (all at exit); top up worker channels."""
        if self.payments is not None:
            overdue_after_s = 2 * self.config.payments.settle_interval_s
            await self.payments.settle(final=final, overdue_after_s=overdue_after_s)
