"""A proxy's bills: receipts verified as they come, written at the end of the loop's turn.

`Settlement` hands each receipt a tab takes here. It is verified at once (a
bad final receipt fails the answer), then billed with the turn's other
receipts (payments/turns.py): the charge, what the client owes on its channel
and the worker's share; the frame carrying it leaves once that is written
(`Settlement.durable`). The first receipts of new requests, nearly all of a
turn under load, go with payments on to the book's journal of bills, one
record each in one `write` (payments/bill_journal.py), else in one
transaction of a few statements (`Ledger.record_all`, `owe_new`); a request
billed before, or a turn where neither can be, is billed one receipt at a
time, each in a write of its own, so that one the book refuses fails its own
tab only.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext

from ..crypto.errors import ReceiptError
from ..crypto.receipts import Receipt
from ..metrics import Registry
from ..payments.errors import LedgerError
from ..payments.ledger import Charge, Ledger, charge_row
from ..payments.sides import receipt_price
from ..payments.turns import TurnWrites
from ..pricing import Prices
from ..recent import remember
from ..wire.errors import PeerError
from ..wire.messages import Request, VoucherMsg
from .billing import Biller
from .payments import ProxyPayments
from .tab import Tab
from .worker_state import WorkerInfo

log = logging.getLogger(__name__)

# Requests billed from workers' invoices that are remembered (`Bills.invoiced`). An
# answer can be on its way only when its request is invoiced (a worker invoices after
# its channel was quiet for twice the settle interval): far fewer are in flight then.
RECENT_INVOICES = 4096

# A receipt verified, to bill at the end of the turn: it, its bytes, its worker, its tab.
Bill = tuple[Receipt, bytes, WorkerInfo, Tab]


class _NotNew(Exception):
    """A turn's new requests cannot be billed at once: the write is undone."""


class Bills:
    """Receipts to bill, and the metrics of what was billed."""

    def __init__(
        self,
        ledger: Ledger,
        payments: ProxyPayments | None,
        biller: Biller,
        prices_for: Callable[[Request], Prices],
        metrics: Registry,
    ) -> None:
        self.ledger = ledger
        self.payments = payments
        self.biller = biller
        self.prices_for = prices_for
        self.tokens_total = metrics.counter("tokens_total", "Tokens billed, by class.")
        self.billed_nano_total = metrics.counter("billed_nanotons_total", "Nanotons billed.")
        self.bad_receipts_total = metrics.counter(
            "bad_receipts_total", "Receipts that did not verify."
        )
        self._turn: TurnWrites[Bill] = TurnWrites(self._write_bills)
        # Requests a worker's invoice billed lately (`invoiced`), newest last.
        self._invoiced: OrderedDict[str, None] = OrderedDict()

    def invoiced(self, request_id: str) -> None:
        """A worker's invoice bills this request. Its answer may still be on its way
        here: the relay's tab, which does not know, then bills its receipts as those of
        a request billed before (by what each adds, in a transaction). As new ones they
        would go through the journal again, owed in full in memory until a fold, and a
        voucher to the worker signed from memory meanwhile would pay the invoiced
        share twice."""
        remember(self._invoiced, request_id, None, RECENT_INVOICES)

    def flush(self) -> None:
        """Bill what is queued now (an invoice, the stop)."""
        self._turn.flush()

    async def written(self) -> None:
        """Return once what was queued is written (`Settlement.durable` then commits)."""
        await self._turn.written()

    def bill(
        self, receipt_bytes: bytes, worker: WorkerInfo, tab: Tab, *, end: bool = False
    ) -> Receipt | None:
        """Verify a receipt now, and bill it at the end of this turn of the event loop
        with the turn's other receipts (`_write_bills`): the charge, what the client owes
        and what we owe the worker, in one write, before the frame that carries it goes
        on (`durable`). None: it proved nothing; a bad one that ends the answer raises
        PeerError."""
        try:
            receipt = self.biller.check(
                receipt_bytes,
                tab.request,
                worker_key=worker.channel.peer.public_key,
                coefficient_milli=worker.coefficient_milli,
                request_hash=tab.envelope_hash,
            )
        except ReceiptError as exc:
            self.bad_receipts_total.inc()
            log.warning(
                "bad receipt from worker %s for %s: %s", worker.key_id, tab.request.request_id, exc
            )
            if end:
                raise PeerError("bad_receipt", f"worker receipt rejected: {exc}", False) from exc
            return None
        self._turn.add((receipt, receipt_bytes, worker, tab))
        return receipt

    def _write_bills(self, bills: list[Bill]) -> None:
        """Bill a turn's receipts (payments/turns.py): those of requests not billed before
        in one write of a few statements (`_write_new`), the rest, or all where that
        cannot be, each in its own write. One that cannot be written fails its tab,
        not the others."""
        if self._invoiced:
            for bill in bills:
                if bill[3].request.request_id in self._invoiced:
                    bill[3].billed = True
        new = [bill for bill in bills if not bill[3].billed]
        # Even one: at c=64 nearly a third of the turns bill a single receipt, which
        # one by one (a statement per row, each after a read) took 186 µs of CPU.
        if new:
            rest = [bill for bill in bills if bill[3].billed]
            if self._write_new(new):
                bills = rest
        for receipt, receipt_bytes, worker, tab in bills:
            try:
                self._write_bill(receipt, receipt_bytes, worker, tab)
            except LedgerError as exc:
                log.warning("cannot bill %s: %s", tab.request.request_id, exc)
                tab.failure = exc

    def _write_new(self, bills: list[Bill]) -> bool:
        """The first receipts of many requests: their charges, what their clients owe and
        the workers' shares, in one journal record each (`_journal_new`) or one statement
        each (`_transact_new`). False, and nothing written, if any request is on the
        books already (or held by the journal)."""
        payments = self.payments
        amounts = [
            # At the coefficient the receipt states, which `check` found the worker's.
            receipt_price(self.prices_for(tab.request), receipt)
            for receipt, _, _, tab in bills
        ]
        charges = [
            Charge(
                receipt, receipt_bytes, tab.client, worker.key_id, worker.coefficient_milli, amount
            )
            for (receipt, receipt_bytes, worker, tab), amount in zip(bills, amounts, strict=True)
        ]
        if payments is None:
            if not self.ledger.record_all(charges):
                return False
            vouchers = []
        else:
            due = self._journal_new(payments, bills, charges)
            if due is None:
                due = self._transact_new(payments, bills, charges)
            if due is None:
                return False
            vouchers = due
        for bill, amount in zip(bills, amounts, strict=True):
            bill[3].billed = True
            self._count(bill[0], amount)
        if payments is not None:
            for voucher in vouchers:
                payments.workers.send(*voucher)
        return True

    def _journal_new(
        self, payments: ProxyPayments, bills: list[Bill], charges: list[Charge]
    ) -> list[tuple[str, VoucherMsg]] | None:
        """Bill through the book's journal (payments/bill_journal.py): one `write`, no
        transaction, the rule. The vouchers due; None where the journal cannot take them
        (a request it holds, a worker's channel running dry, a write that failed)."""
        now = time.time()
        try:
            return payments.bill_new(
                [
                    (charge_row(charge, now), tab.channel, charge.worker_key, charge.amount_nano)
                    for charge, (_, _, _, tab) in zip(charges, bills, strict=True)
                ]
            )
        except OSError as exc:
            log.warning("cannot journal %d bills: %s", len(bills), exc)
            return None

    def _transact_new(
        self, payments: ProxyPayments, bills: list[Bill], charges: list[Charge]
    ) -> list[tuple[str, VoucherMsg]] | None:
        """Bill in one transaction of a few statements (`Ledger.record_all`, `owe_new`):
        the vouchers due; None, and nothing written, if any request is on the books."""
        debts = [
            # Each charge holds its receipt: the client's book keeps no copy.
            (tab.channel, tab.request.request_id, charge.amount_nano, receipt.seq, None)
            for charge, (receipt, _, _, tab) in zip(charges, bills, strict=True)
            if tab.channel is not None
        ]
        shares = [
            (charge.worker_key, charge.receipt.request_id, charge.amount_nano, charge.receipt.seq)
            for charge in charges
        ]
        try:
            with payments.book.transaction():
                if not self.ledger.record_all(charges):
                    return None
                # The workers' shares last: a voucher they make due is signed only
                # once nothing after it can undo the write.
                if not payments.clients.owe_new(debts):
                    raise _NotNew
                due = payments.owe_workers_new(shares)
                if due is None:
                    raise _NotNew
                return due
        except (_NotNew, LedgerError):
            return None  # undone: one by one

    def _write_bill(
        self, receipt: Receipt, receipt_bytes: bytes, worker: WorkerInfo, tab: Tab
    ) -> None:
        request, channel = tab.request, tab.channel
        payments = self.payments
        voucher: tuple[str, VoucherMsg] | None = None
        amount = receipt_price(self.prices_for(request), receipt)
        with payments.book.transaction() if payments is not None else nullcontext():
            kept = self.ledger.record(
                receipt,
                receipt_bytes,
                client_key=tab.client,
                worker_key=worker.key_id,
                coefficient_milli=worker.coefficient_milli,
                amount_nano=amount,
            )
            if payments is not None:
                if channel is not None:
                    # The receipt is the ledger's to keep, once: the client's book
                    # keeps one only where the ledger holds another.
                    payments.clients.owe(
                        channel,
                        request.request_id,
                        amount,
                        receipt.seq,
                        None if kept else receipt_bytes,
                    )
                voucher = payments.owe_worker(
                    worker.key_id, request.request_id, amount, receipt.seq
                )
        tab.billed = True
        if voucher is not None and payments is not None:
            # Stored first: if the worker is gone, the next PayChannel carries it.
            payments.workers.send(*voucher)
        self._count(receipt, amount)

    def _count(self, receipt: Receipt, amount_nano: int) -> None:
        """Metrics of a billed answer, once its final receipt is billed."""
        if receipt.final:
            self.tokens_total.inc(receipt.prompt_tokens, kind="prompt")
            self.tokens_total.inc(receipt.completion_tokens, kind="completion")
            self.billed_nano_total.inc(amount_nano)
