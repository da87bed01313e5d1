"""A payee's new receipts appended to a journal, folded into its book in large batches.

A worker records each receipt before it leaves, so that a kill -9 never lets a
proxy hold a receipt its worker has no record of. Recorded in the book, that
was a transaction and a commit for each turn of the event loop with receipts:
at c=64 about six rows a commit, each commit writing 12-16 pages of log with
two system calls a page. A worker that wrote nothing spent about 60 µs of the
nodes' CPU a request less (issue 18).

Here a turn's new receipts are one `write` to an append-only file, as durable
against kill -9 as a commit (both reach the OS, neither is synced); the book's
rows and channel totals follow when the journal is folded in, many turns at
once: before anything reads or writes the book's rows (an invoice, a later
receipt of the same request), past `FOLD_ROWS` receipts (in slices:
slices.py), and at close. Each
receipt keeps when it was owed, so a voucher accepted settles it by time
without folding it first (folding.py). What the channel is owed is kept
current in memory meanwhile, so the credit bound and the payer's state see
every receipt at once.

Each fold starts a new journal file; the folded one is removed once the fold's
transaction is committed. Opening the book folds in what a crash left, as the
one-by-one `owe` does, which an already-folded receipt leaves unchanged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import LedgerError
from .folding import FoldsFirst
from .journal_files import JournalFiles, StampedDecoder
from .slices import FoldSlices

log = logging.getLogger(__name__)

# Receipts that make a fold when no read came first (written in slices).
FOLD_ROWS = 1024
# Requests folded lately, remembered so that a stream's later receipts are journaled
# too, by what they add (a stream in flight when a fold came).
FOLDED_KEPT = 4096

# One receipt: channel, request id, amount, receipt seq, the receipt kept, and when it
# was owed (the book's clock).
Entry = tuple[str, str, int, int, bytes, float]
Unstamped = tuple[str, str, int, int, bytes]

_decoder: StampedDecoder[Entry] = StampedDecoder(Entry, Unstamped)


class JournaledBook(FoldsFirst):
    """A payee's `PaymentBook` whose new receipts go to a journal first (`owe_new`)."""

    stamped = True

    def __init__(
        self,
        path: Path,
        *,
        journal: Path,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
    ) -> None:
        super().__init__(path, network_id=network_id, key=key)
        self._journal = JournalFiles(journal, _decoder)
        self._pending: dict[tuple[str, str], Entry] = {}
        self._slices: FoldSlices[tuple[str, str], Entry] = FoldSlices(self._write_slice_of)
        self._folded: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        # For /jsonstats and /metrics: receipts journaled, and folds made.
        self.journaled = 0
        self.folds = 0
        self._unfolded = 0  # receipts journaled since the last fold (a request's several)
        self._journal.open(self._fold_left, "receipts")
        self.commits.on_undone(self._fold_undone)

    def _fold_left(self, entries: list[Entry]) -> None:
        with self.transaction():
            for channel, request_id, amount, seq, receipt, at in entries:
                try:
                    super().owe(channel, request_id, amount, seq, receipt, at=at or None)
                except LedgerError as exc:  # a channel gone from the book: not ours to owe
                    log.warning("journaled receipt for %s not owed: %s", request_id, exc)
        self.commits.commit()

    # -- new receipts ----------------------------------------------------------------

    def owe_new(
        self,
        items: Sequence[tuple[str, str, int, int, bytes | None]],
        stamps: Sequence[float] | None = None,
    ) -> bool:
        """Journal receipts (one `write`, durable when it returns), stamped now (`stamps`
        is not for this book), and owe them at once in memory: the first of a new
        request in full, a later one (a stream's) by what it adds to the one before, as
        `owe` does; an older one adds nothing. False, and nothing written, for one
        `owe` would refuse (the caller owes them one by one, which folds the journal
        first, and hears why).

        Whether the book's rows hold a request already is not read here (a read per
        receipt cost as much as the write it replaces): the journal and the receipts
        folded lately are known, and a request served again after a restart is found
        at the fold, which owes it as `owe` does. Until then memory counts it in full,
        which errs towards refusing the payer early, never towards owing it less."""
        entries: dict[tuple[str, str], Entry] = {}
        grew: dict[str, int] = {}
        now = self.now()
        for channel, request_id, amount, seq, receipt in items:
            row = self.channel(channel)
            if amount < 0 or receipt is None or row is None or row.side != "payee":
                return False
            key = (channel, request_id)
            known = (
                entries.get(key)
                or self._pending.get(key)
                or self._slices.held.get(key)
                or self._folded.get(key)
            )
            if known is not None and (seq <= known[3] or amount < known[2]):
                continue
            entries[key] = (channel, request_id, amount, seq, receipt, now)
            more = amount - known[2] if known is not None else amount
            grew[channel] = grew.get(channel, 0) + more
        if not entries:
            return True
        # Failed (OSError), nothing is owed: the caller's receipts do not leave.
        self._journal.append(entries.values())
        self._pending.update(entries)
        self.journaled += len(entries)
        self._unfolded += len(entries)
        self._slices.arrived(len(entries))
        for channel, amount in grew.items():
            row = self.channel(channel)
            assert row is not None
            self._rows[channel] = row.owing(amount)
        if len(self._pending) >= FOLD_ROWS:
            self._fold_soon()
        return True

    def _fold_soon(self) -> None:
        """Past the bound: the receipts held are folded in slices (slices.py);
        whole without a running loop, or where twice the bound is held before the last
        fold's slices are written."""
        if not self._slices.begin(len(self._pending), FOLD_ROWS, self.fold):
            return
        entries, self._pending = self._pending, {}
        folded = self._journal.fold_started()
        self.folds += 1
        self._unfolded = 0
        self._slices.start(
            entries, lambda: self.commits.then(lambda: self._journal.fold_committed(folded))
        )

    def _write_slice_of(self, entries: list[Entry]) -> None:
        self._write_slice({entry[0] for entry in entries}, lambda: self._write(entries))

    def fold(self) -> None:
        """Write the journaled receipts into the book's rows (those of new requests in
        one statement, later receipts of requests folded before one by one); the
        journal file goes once that is committed."""
        if not self._holding():
            return
        # Slices not written yet first, a request's newer receipt held over its older.
        entries = self._slices.take() | self._pending
        self._pending = {}
        folded = self._journal.fold_started()
        self.folds += 1
        self._unfolded = 0
        with self.transaction():
            self._write(list(entries.values()))
        # The channel totals read again: written now, they hold what memory did.
        for channel in {entry[0] for entry in entries.values()}:
            self._rows.pop(channel, None)
        self.commits.then(lambda: self._journal.fold_committed(folded))

    def _write(self, entries: list[Entry]) -> None:
        """Receipts of requests new to the rows in one statement, later ones one by one."""
        fresh = [entry for entry in entries if (entry[0], entry[1]) not in self._folded]
        again = [entry for entry in entries if (entry[0], entry[1]) in self._folded]
        if not super().owe_new([entry[:5] for entry in fresh], [e[5] for e in fresh]):
            again = fresh + again  # not all new after all: one by one, as at recovery
        for channel, request_id, amount, seq, receipt, at in again:
            super().owe(channel, request_id, amount, seq, receipt, at=at)
        self._folded.update({(entry[0], entry[1]): entry for entry in entries})
        while len(self._folded) > FOLDED_KEPT:
            self._folded.popitem(last=False)

    def _fold_undone(self) -> None:
        """A write was undone: the receipts of a fold not committed are held again (the
        newest of each request), to be folded anew, as recovery would at the next open.
        Owed again one by one, as the ones the rows may hold already are."""
        self._slices.drop()  # their receipts are in the files handed back
        for entry in self._journal.fold_undone():
            key = (entry[0], entry[1])
            self._folded.pop(key, None)
            held = self._pending.get(key)
            if held is None or held[3] < entry[3]:
                if held is None:
                    self._unfolded += 1
                self._pending[key] = entry

    def holds(self, channel: str, request_id: str) -> bool:
        key = (channel, request_id)
        return key in self._pending or key in self._slices.held

    @property
    def pending(self) -> int:
        """Receipts journaled and not folded in yet."""
        return self._unfolded + len(self._slices.held)

    def journal_status(self) -> dict[str, int]:
        return {
            "journaled": self.journaled,
            "pending": self.pending,
            "folds": self.folds,
            "slices": self._slices.slices,
            "folded": self.journaled - self.pending,
        }

    def close(self) -> None:
        if self._journal.close_folded(self.fold, self.commits.commit):
            super().close()
