"""A proxy's record of each request it forwards, journaled first, folded into its book later.

A proxy puts a request on record before it leaves for a worker, so that the
worker's invoice for it can be billed to its client even after a crash of
the proxy lost the answer (proxy/settlement.py). In the book, that was a
row and an index entry a request in the turn's transaction, and the request
waited for that commit before it left: about 30 µs of the proxy's CPU a
request at c=64 with payments on, and a commit on each request's way out
at c=1 (issue 18; `cocoon bench`, the record left out).

Here a turn's requests are one `write` to an append-only file
(journal_files.py), as durable against kill -9 as the commit was, and they
leave once it returns. Until they are folded into `pay_expected` (past
`FOLD_ROWS` requests in slices, slices.py; whole at close or before a
request is put in the rows alone) they are known in memory; a request id on
record already, in memory or in the rows (one query a turn), is refused as
before. Opening the book folds in what a crash left.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .book import PaymentBook
from .commits import GroupCommit
from .journal_files import JournalFiles
from .rows import Expected, ExpectedRow, read_expected
from .slices import FoldSlices

# Requests on record in memory that make a fold (the memory a proxy spends on them);
# each takes about 8 µs to write, in slices.
FOLD_ROWS = 4096
_FOLD = "INSERT OR IGNORE INTO pay_expected VALUES (?,?,?,?,?,?,?,?)"
_decoder = msgspec.msgpack.Decoder(ExpectedRow)


class JournaledExpects(PaymentBook):
    """A payer's `PaymentBook` whose new requests on record go to a journal first."""

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        journal: Path,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
        commits: GroupCommit | None = None,
        receipts: Callable[[str, bytes], bytes | None] | None = None,
    ) -> None:
        super().__init__(db, network_id=network_id, key=key, commits=commits, receipts=receipts)
        self._journal = JournalFiles(journal, _decoder)
        self._on_record: dict[str, ExpectedRow] = {}
        self._record_slices: FoldSlices[str, ExpectedRow] = FoldSlices(self._write_records)
        # For /jsonstats: requests journaled, and folds made.
        self.journaled = 0
        self.folds = 0
        self._journal.open(self._fold_left, "requests")
        self.commits.on_undone(self._fold_undone)

    def _fold_left(self, rows: list[ExpectedRow]) -> None:
        with self.transaction() as db:
            db.executemany(_FOLD, rows)
        self.commits.commit()

    def expect_new(self, rows: Sequence[ExpectedRow]) -> bool:
        """Put requests on record in one journal write (on disk, as far as kill -9 goes,
        when this returns), if none is on record already: True. Else nothing is
        written: False (for one row: it was on record, and is kept). OSError if the
        write failed: nothing is on record, and the requests must not leave."""
        if not rows:
            return True
        ids = [row[0] for row in rows]
        held = self._record_slices.held
        if len(set(ids)) < len(ids) or any(rid in self._on_record or rid in held for rid in ids):
            return False
        marks = ",".join("?" * len(ids))
        found = self._db.execute(
            f"SELECT 1 FROM pay_expected WHERE request_id IN ({marks}) LIMIT 1", ids
        ).fetchone()
        if found is not None:
            return False
        self._journal.append(rows)
        for row in rows:
            self._on_record[row[0]] = row
        self.journaled += len(rows)
        self._record_slices.arrived(len(rows))
        if len(self._on_record) >= FOLD_ROWS:
            self._fold_records_soon()
        return True

    def _fold_records_soon(self) -> None:
        """Past the bound: the requests held are folded in slices (slices.py);
        whole without a running loop, or where twice the bound is held before the last
        fold's slices are written."""
        slices = self._record_slices
        if not slices.begin(len(self._on_record), FOLD_ROWS, self.fold_records):
            return
        rows, self._on_record = self._on_record, {}
        folded = self._journal.fold_started()
        self.folds += 1
        slices.start(rows, lambda: self.commits.then(lambda: self._journal.fold_committed(folded)))

    def _write_records(self, rows: list[ExpectedRow]) -> None:
        """A slice of them, in a lazy transaction (they are in the journal: the slices of
        50 ms share a commit) that folds nothing else first."""
        with self._records_transaction() as db:
            db.executemany(_FOLD, rows)

    def _records_transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.transaction(lazy=True)

    async def expects_durable(self) -> None:
        """The journal's write is on disk when `expect_new` returns: nothing to wait for."""

    def expected(self, request_id: str) -> Expected | None:
        row = self._on_record.get(request_id) or self._record_slices.held.get(request_id)
        if row is None:
            return super().expected(request_id)
        return read_expected(*row[:6], row[7])

    def expect(
        self,
        request_id: str,
        channel: str,
        *,
        request_hash: bytes,
        signers: list[bytes],
        max_coefficient_milli: int,
        peer: str = "",
        moved: bool = False,
        auth: bytes = b"",
    ) -> bool:
        """One request in the rows at once (a `moved` one replaces its record there)."""
        self.fold_records()
        return super().expect(
            request_id,
            channel,
            request_hash=request_hash,
            signers=signers,
            max_coefficient_milli=max_coefficient_milli,
            peer=peer,
            moved=moved,
            auth=auth,
        )

    def fold(self) -> None:
        """Write what memory holds into the rows (`fold_records`)."""
        self.fold_records()

    def fold_records(self) -> None:
        """Write the journaled requests into the rows, in one statement; their journal
        file goes once that is committed."""
        if not (self._on_record or self._record_slices.held):
            return
        # Slices not written yet come first: their file goes with this fold's.
        rows = [*self._record_slices.take().values(), *self._on_record.values()]
        # In the rows from now on (this connection reads its own open transaction); were
        # the write undone, `_fold_undone` holds them again.
        self._on_record = {}
        folded = self._journal.fold_started()
        self.folds += 1
        with self.transaction() as db:
            db.executemany(_FOLD, rows)
        self.commits.then(lambda: self._journal.fold_committed(folded))

    def _fold_undone(self) -> None:
        """A write was undone: the requests of a fold not committed are held again, to
        be folded anew (a record folded twice is kept once: `INSERT OR IGNORE`)."""
        self._record_slices.drop()  # their rows are in the files handed back
        for row in self._journal.fold_undone():
            self._on_record.setdefault(row[0], row)

    @property
    def pending(self) -> int:
        """Requests journaled and not folded in yet."""
        return len(self._on_record) + len(self._record_slices.held)

    def journal_status(self) -> dict[str, int]:
        return {
            "journaled": self.journaled,
            "pending": self.pending,
            "folds": self.folds,
            "slices": self._record_slices.slices,
        }

    def close(self) -> None:
        if self._journal.close_folded(self.fold_records, self.commits.commit):
            super().close()
