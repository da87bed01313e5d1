"""A payer's debts for new requests, kept in memory and written to its book many at once.

A client owes each answer's price as the answer goes on to the app. The
write was lazy already (committed with the next commit something needs: a
voucher, or within 50 ms), since a debt a crash loses comes back as the
proxy's invoice, which the client's tag proves. It was still a transaction
and a statement for each turn of the event loop with answers: about 20 µs of
the client's CPU a request at c=64 (issue 18).

Here a new request's debt is owed in memory at once (what the channel owes,
so the voucher due, the credit bound and a top-up see it) and written to the
rows, with every other debt since, in one statement when anything writes or
reads the book's rows (a chain state, an invoice, a status page), past
`FOLD_ROWS` debts (in slices: slices.py), and at close. What a crash
loses is what the lazy write lost: debts no voucher covered, which the proxy
invoices again.

A voucher must not leave before the debts it covers are on disk: were they
lost, an invoice for one would be paid again. Without a journal the book
folds them first. With one (the client's, `debts.journal.N`), the debts held
are one `write` to it before the voucher is signed, each with when it was
owed, and the voucher settles them by that time (folding.py); the rows follow
at the next fold, or from the journal at the next open after a crash. At c=1
that fold, 0.5-0.9 ms once every 70 requests or so, was the client's share of
the p99 that payments added (issue 18).

A voucher signed from memory is only as right as memory, so `defer_new`
takes only what is new to the rows: an answer's first debt, of a request the
client sent since it started and was never invoiced for (client/paying.py).
Anything else (a stream's later receipt, an invoice) is owed one by one,
which folds first and reads the request's row.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import LedgerError
from .folding import FoldsFirst
from .journal_files import JournalFiles
from .rows import ChannelRow
from .slices import FoldSlices
from .vouchers import SignedVoucher

log = logging.getLogger(__name__)

# Debts that make a fold when no write came first (written in slices).
FOLD_ROWS = 1024

# One debt: channel, request id, what the request costs in all, receipt seq.
Debt = tuple[str, str, int, int]
# As held: with when it was owed (the book's clock).
Held = tuple[str, str, int, int, float]
_decoder = msgspec.msgpack.Decoder(Held)


class LazyDebtsBook(FoldsFirst):
    """A payer's `PaymentBook` whose debts for new requests wait in memory (`defer_new`)."""

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
        journal: Path | None = None,
    ) -> None:
        super().__init__(db, network_id=network_id, key=key)
        self._pending: dict[tuple[str, str], Held] = {}
        self._slices: FoldSlices[tuple[str, str], Held] = FoldSlices(self._write_slice_of)
        self.folds = 0  # for tests
        # Held debts not in the journal yet (written there before a voucher), and
        # whether the journal's file holds any not folded yet.
        self._unjournaled: list[Held] = []
        self._journaled = False
        self._journal: JournalFiles[Held] | None = None
        if journal is not None:
            self.stamped = True
            self._journal = JournalFiles(journal, _decoder)
            self._journal.open(self._recover, "debts")
            self.commits.on_undone(self._fold_undone)

    def defer_new(self, items: Sequence[Debt]) -> bool:
        """Owe new requests' debts in memory now, to write later: True. False, and
        nothing owed, if one is held already or a deposit cannot cover them: owe them
        one by one (`PayerSide.owe`), which folds these first and says why.

        Each must be new to the rows as well, which only the caller knows (a read per
        request would cost what the lazy write saves): counted here in full, one the
        rows hold would be vouchered twice."""
        grew: dict[str, int] = {}
        keys = set()
        for channel, request_id, amount, seq in items:
            key = (channel, request_id)
            if amount <= 0 or seq < 0 or key in keys or self.holds(channel, request_id):
                return False
            keys.add(key)
            grew[channel] = grew.get(channel, 0) + amount
        rows: dict[str, ChannelRow] = {}
        for channel, amount in grew.items():
            row = self.channel(channel)
            if row is None or row.side != "payer" or amount > row.deposit_nano - row.owed_nano:
                return False
            rows[channel] = row
        now = self.now()
        for channel, request_id, amount, seq in items:
            held = (channel, request_id, amount, seq, now)
            self._pending[(channel, request_id)] = held
            if self._journal is not None:
                self._unjournaled.append(held)
        for channel, amount in grew.items():
            self._rows[channel] = rows[channel].owing(amount)
        self._slices.arrived(len(items))
        if len(self._pending) >= FOLD_ROWS:
            self._fold_soon()
        return True

    def _fold_soon(self) -> None:
        """Past the bound: the debts held are folded in slices (slices.py); whole
        without a running loop, or where twice the bound is held before the last fold's
        slices are written. Those not journaled yet stay to be, before a voucher."""
        if not self._slices.begin(len(self._pending), FOLD_ROWS, self.fold):
            return
        debts, self._pending = self._pending, {}
        self.folds += 1
        journal, folded = self._next_file()
        self._slices.start(debts, lambda: self._fold_done(journal, folded))

    def _next_file(self) -> tuple[JournalFiles[Held] | None, int | None]:
        """A fold begins: a new journal file, if this one holds debts (a stream's later
        receipts fold every turn at c=64, most of them with no voucher since the last)."""
        journal = self._journal if self._journaled else None
        self._journaled = False
        return journal, journal.fold_started() if journal is not None else None

    def _fold_done(self, journal: JournalFiles[Held] | None, folded: int | None) -> None:
        """The fold's rows are written: its file goes once they are committed."""
        if journal is not None and folded is not None:
            self.commits.then(lambda: journal.fold_committed(folded))

    def _write_slice_of(self, debts: list[Held]) -> None:
        self._write_slice({debt[0] for debt in debts}, lambda: self._write(debts))

    def fold(self) -> None:
        """Write the debts waiting in memory to the rows: those of new requests in one
        statement, any other (a request in the rows already) as `incur` does. A journal
        file folded goes once that is committed."""
        if not self._holding():
            return
        # Slices not written yet first: their file goes with this fold's.
        debts = [*self._slices.take().values(), *self._pending.values()]
        self._pending = {}
        self._unjournaled = []
        self.folds += 1
        # Read the channels again: memory holds these debts already, the rows do not.
        for channel in {debt[0] for debt in debts}:
            self._rows.pop(channel, None)
        journal, folded = self._next_file()
        with super().transaction(lazy=True):
            self._write(debts)
        self._fold_done(journal, folded)

    def _write(self, debts: list[Held]) -> None:
        if not super().incur_new([debt[:4] for debt in debts], [debt[4] for debt in debts]):
            for channel, request_id, amount, seq, at in debts:
                try:
                    super().incur(channel, request_id, amount, seq, at=at)
                except LedgerError as exc:  # the deposit shrank since: invoiced again
                    log.warning("debt for %s not written: %s", request_id, exc)

    def voucher(self, channel: str) -> SignedVoucher | None:
        """With a journal: the debts held go to it first (one `write`), and the voucher
        settles them by when they were owed, without a fold. A write that fails folds
        them instead."""
        if self._unjournaled and self._journal is not None:
            self._journaled = True  # even cut short: the file is folded and dropped
            try:
                self._journal.append(self._unjournaled)
            except OSError as exc:
                log.warning("debts journal not written (%s): folding them", exc)
                self.fold()
            self._unjournaled = []
        return super().voucher(channel)

    def holds(self, channel: str, request_id: str) -> bool:
        key = (channel, request_id)
        return key in self._pending or key in self._slices.held

    def _recover(self, debts: list[Held]) -> None:
        """What a crash left in the journal, at open: debts a voucher covered, or was
        about to (written as `incur` does, which leaves one folded before as it is)."""
        with self.transaction():
            self._write(debts)
        self.commits.commit()

    def _fold_undone(self) -> None:
        """A write was undone: the journaled debts of a fold not committed are held again
        (their channels are read from the rows again, which folds them)."""
        assert self._journal is not None
        self._slices.drop()  # their debts are in the files handed back, or the proxy's
        for debt in self._journal.fold_undone():
            self._pending.setdefault((debt[0], debt[1]), debt)
            self._journaled = True  # their files go with the next fold
        # Debts of the slices dropped that no file holds are lost, as a whole fold's are.
        self._unjournaled = [d for d in self._unjournaled if self._pending.get(d[:2]) is d]

    @property
    def pending(self) -> int:
        """Debts owed in memory, not written to the rows yet."""
        return len(self._pending) + len(self._slices.held)

    def close(self) -> None:
        if self._journal is None:
            self.fold()
            super().close()
        elif self._journal.close_folded(self.fold, self.commits.commit):
            super().close()
