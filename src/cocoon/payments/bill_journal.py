"""A proxy's bills journaled first, folded into its ledger and book many at once.

Billing a request's receipt is three writes that go together: the charge (the
ledger's row, with the receipt), what the client owes on its channel, and the
worker's share on the worker's channel. They were one transaction for each
turn of the event loop with receipts, and the frame carrying the receipt left
once it was committed: with payments on, the proxy then wrote about twice the
log pages it wrote without them, and at c=1 each request paid a commit of its
own (issue 18).

Here a turn's new bills are one `write` to an append-only file, each bill one
record holding all three, so that a crash keeps all of a bill or none of it;
as durable against kill -9 as the commit was (journal_files.py). What the
channels owe is kept current in memory at once, so the client's credit bound,
the vouchers due to workers and the top-ups see every bill. The rows follow
when the journal is folded in, in one transaction: before anything reads or
writes the book's rows (an invoice, a status page, a top-up), every
`FOLD_ROWS` bills, and at close. Each bill keeps when it was billed, so a
voucher signed or accepted settles it by time without folding it first
(folding.py). The requests on record
(expects_journal.py) keep a cadence of their own. Opening the book folds in
what a crash left; folding a bill twice leaves the books as folding it once
(each write is by the receipt's sequence number).

Only the first receipt of a new request is billed here; a later one (a long
stream's) or a request the rows may hold (an invoice) is billed as before, in
a transaction, which folds these first.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .commits import GroupCommit
from .errors import LedgerError
from .expects_journal import JournaledExpects
from .folding import FoldsFirst
from .journal_files import JournalFiles, StampedDecoder
from .ledger import ROW_RECEIPT, ROW_REQUEST_ID, ROW_SEQ, ChargeRow, Ledger
from .rows import ChannelRow
from .slices import FoldSlices

log = logging.getLogger(__name__)

# Bills that make a fold when nothing read the rows first. A bill's rows take about
# 12 µs to write, in slices (slices.py).
FOLD_ROWS = 1024

# One bill: the charge's row, the client's channel ("": none) and what it owes for the
# request, the worker's channel ("": none) and its share.
BillEntry = tuple[ChargeRow, str, int, str, int]
# As journaled: with when it was billed (the book's clock).
Bill = tuple[ChargeRow, str, int, str, int, float]

_decoder: StampedDecoder[Bill] = StampedDecoder(Bill, BillEntry)


class ProxyBook(FoldsFirst, JournaledExpects):
    """The proxy's `PaymentBook`: requests on record and new bills go to journals first."""

    stamped = True

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        ledger: Ledger,
        journal: Path,
        bills_journal: Path,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
        commits: GroupCommit | None = None,
        receipts: Callable[[str, bytes], bytes | None] | None = None,
    ) -> None:
        # Set first: opening the journal of requests folds, and folding reads these.
        self._ledger = ledger
        self._pending: dict[str, Bill] = {}
        self._slices: FoldSlices[str, Bill] = FoldSlices(self._write_bill_slice)
        self._bills = JournalFiles(bills_journal, _decoder)
        # For /jsonstats: bills journaled, and folds of them made.
        self.bills_journaled = 0
        self.bill_folds = 0
        super().__init__(
            db, journal=journal, network_id=network_id, key=key, commits=commits, receipts=receipts
        )
        self._bills.open(self._recover, "bills")
        self.commits.on_undone(self._bills_undone)
        ledger.held = self

    def bill_new(self, entries: Sequence[BillEntry]) -> bool:
        """Journal the first receipts of new requests (one `write`: on disk, as far as
        kill -9 goes, when this returns) and owe them at once in memory: True. False,
        and nothing written, for a request held already, a channel this book does not
        have, or a worker's deposit that cannot cover its share: the caller bills them
        in a transaction, which folds these first and says why. OSError if the write
        failed: nothing is billed, and the receipts must not leave."""
        debts: dict[str, int] = {}
        shares: dict[str, int] = {}
        ids = set()
        for charge, client, amount, worker, share in entries:
            request_id = charge[ROW_REQUEST_ID]
            if request_id in ids or self._holds(request_id) or amount < 0 or share < 0:
                return False
            ids.add(request_id)
            if client:
                debts[client] = debts.get(client, 0) + amount
            if worker and share:
                shares[worker] = shares.get(worker, 0) + share
        rows: dict[str, ChannelRow] = {}
        for channel in debts:
            row = self.channel(channel)
            if row is None or row.side != "payee":
                return False
            rows[channel] = row
        for channel, share in shares.items():
            row = self.channel(channel)
            if row is None or row.side != "payer" or share > row.deposit_nano - row.owed_nano:
                return False
            rows[channel] = row
        if not entries:
            return True
        now = self.now()
        bills = [(*entry, now) for entry in entries]
        self._bills.append(bills)
        for bill in bills:
            self._pending[bill[0][ROW_REQUEST_ID]] = bill
        self.bills_journaled += len(entries)
        self._slices.arrived(len(entries))
        for channel, more in (*debts.items(), *shares.items()):
            self._rows[channel] = rows[channel].owing(more)
        if len(self._pending) >= FOLD_ROWS:
            self._fold_soon()
        return True

    def _fold_soon(self) -> None:
        """Past the bound: the bills held are folded in slices (slices.py); whole
        without a running loop, or where twice the bound is held before the last
        fold's slices are written."""
        if not self._slices.begin(len(self._pending), FOLD_ROWS, self.fold):
            return
        entries, self._pending = self._pending, {}
        folded = self._bills.fold_started()
        self.bill_folds += 1
        self._slices.start(
            entries, lambda: self.commits.then(lambda: self._bills.fold_committed(folded))
        )

    def _write_bill_slice(self, entries: list[Bill]) -> None:
        channels = {channel for entry in entries for channel in (entry[1], entry[3]) if channel}
        self._write_slice(channels, lambda: self._write(entries))

    @contextmanager
    def _records_transaction(self) -> Iterator[sqlite3.Connection]:
        # A slice of the requests on record needs no bill written first.
        with self._folding_nothing(), self.transaction(lazy=True) as db:
            yield db

    def _holds(self, request_id: str) -> bool:
        return request_id in self._pending or request_id in self._slices.held

    def holds(self, channel: str, request_id: str) -> bool:
        return self._holds(request_id)

    def held_receipt(self, request_id: str) -> bytes | None:
        """The receipt a bill not folded yet holds for a request (the ledger's reads)."""
        entry = self._pending.get(request_id) or self._slices.held.get(request_id)
        return None if entry is None else entry[0][ROW_RECEIPT]

    def fold(self) -> None:
        """Write the journaled bills into the ledger and the book in one transaction; the
        bills' file goes once it is committed. The requests on record are folded on their
        own cadence (`fold_records`): nothing that reads the rows needs them, and every
        row a fold writes lengthens the turn of the voucher that made it (a bill's rows
        take about 15 µs: at c=1, 80 bills a voucher, 1.2 ms)."""
        if not self._holding():
            return
        # Slices not written yet come first: their file goes with this fold's.
        entries = [*self._slices.take().values(), *self._pending.values()]
        # Held no more: were the write undone, `_bills_undone` holds them again.
        self._pending = {}
        folded = self._bills.fold_started()
        self.bill_folds += 1
        # Read the channels again: memory holds these bills already, the rows do not.
        for _, client, _, worker, _, _ in entries:
            self._rows.pop(client, None)
            self._rows.pop(worker, None)
        with self.transaction():
            self._write(entries)
        self.commits.then(lambda: self._bills.fold_committed(folded))

    def _write(self, entries: list[Bill]) -> None:
        """Each bill's three writes, all at once where every request is new to the rows
        (the rule), else one by one as a receipt billed again is (an older or equal
        sequence number changes nothing); each row stamped when it was billed."""
        rows = [entry[0] for entry in entries]
        if not self._ledger.record_rows(rows):
            for row in rows:
                self._ledger.record_row(row)
        billed = [entry for entry in entries if entry[1]]
        debts = [
            (client, charge[ROW_REQUEST_ID], amount, charge[ROW_SEQ], None)
            for charge, client, amount, _, _, _ in billed
        ]
        stamps = [entry[5] or self.now() for entry in billed]
        if not super().owe_new(debts, stamps):
            for debt, at in zip(debts, stamps, strict=True):
                self._quietly(super().owe, debt, at)
        shared = [entry for entry in entries if entry[3] and entry[4]]
        shares = [
            (worker, charge[ROW_REQUEST_ID], share, charge[ROW_SEQ])
            for charge, _, _, worker, share, _ in shared
        ]
        stamps = [entry[5] or self.now() for entry in shared]
        if not super().incur_new(shares, stamps):
            for item, at in zip(shares, stamps, strict=True):
                self._quietly(super().incur, item, at)

    @staticmethod
    def _quietly(write: Callable[..., object], args: tuple[object, ...], at: float) -> None:
        try:
            write(*args, at=at)
        except LedgerError as exc:  # a channel gone, or a deposit since shrunk
            log.warning("journaled bill for %s not written: %s", args[1], exc)

    def _recover(self, entries: list[Bill]) -> None:
        """What a crash left in the journal, written as a fold would (at open)."""
        with self.transaction():
            self._write(entries)
        self.commits.commit()

    def _bills_undone(self) -> None:
        """A write was undone: the bills of a fold not committed are held again, to be
        folded anew (the channels are read from the rows again, which folds them)."""
        self._slices.drop()  # their entries are in the files handed back
        for entry in self._bills.fold_undone():
            self._pending.setdefault(entry[0][ROW_REQUEST_ID], entry)

    def bills_status(self) -> dict[str, int]:
        """The journal of bills, for status pages."""
        return {
            "journaled": self.bills_journaled,
            "pending": len(self._pending) + len(self._slices.held),
            "folds": self.bill_folds,
            "slices": self._slices.slices,
        }

    def close(self) -> None:
        if self._bills.close_folded(self.fold, self.commits.commit):
            self._ledger.held = None
            super().close()
