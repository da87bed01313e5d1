"""Many requests' records and first receipts written in a few statements.

A turn of the event loop gathers its receipts (`turns.py`); under load nearly
all are the first of a new request, whose row is one insert. So a turn's rows
go in with one `executemany` and each channel's total is updated once, where
one by one each row was an insert and an update of its channel, each a call
into SQLite. If any request is on the book already (a later receipt of a
stream, a request served again after a restart), or a payer's deposit would
not cover them all, nothing is written and the caller owes them one by one,
as `PaymentBook.owe` and `incur` do, which say why.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .rows import ExpectedRow, Side
from .store import ChannelStore

# A new request's row; one already there is left alone (and the batch undone).
_INSERT_NEW = "INSERT INTO pay_requests VALUES (?,?,?,0,?,?,?) ON CONFLICT DO NOTHING"
_EXPECT_NEW = "INSERT OR IGNORE INTO pay_expected VALUES (?,?,?,?,?,?,?,?)"


def insert_all(db: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]) -> bool:
    """Run `sql` for every row in one call, if each changes a row: True. Else undo them
    all (the caller's transaction keeps what it wrote before): False."""
    db.execute("SAVEPOINT insert_all")
    if db.executemany(sql, rows).rowcount != len(rows):
        db.execute("ROLLBACK TO insert_all")
        db.execute("RELEASE insert_all")
        return False
    db.execute("RELEASE insert_all")
    return True


class NewRows(ChannelStore):
    """The all-at-once path of `PaymentBook.owe` and `incur`."""

    def owe_new(
        self,
        items: Sequence[tuple[str, str, int, int, bytes | None]],
        stamps: Sequence[float] | None = None,
    ) -> bool:
        """Payee: owe (channel, request id, amount, receipt seq, receipt) for each item,
        all in one write, if every request is new to the book: True. Else nothing is
        written: False. `stamps`: when each was owed, where it was held in memory first
        (`folding.py`); else now."""
        rows = []
        grew: dict[str, int] = {}
        for i, (channel, request_id, amount, seq, receipt) in enumerate(items):
            if amount < 0:
                return False
            if receipt is None and self.receipts is not None:
                receipt = b""  # the ledger keeps it (`PaymentBook.owe`)
            stamp = self.now() if stamps is None else stamps[i]
            rows.append((channel, request_id, amount, seq, receipt, stamp))
            grew[channel] = grew.get(channel, 0) + amount
        return self._insert_new(rows, grew, "payee")

    def incur_new(
        self, items: Sequence[tuple[str, str, int, int]], stamps: Sequence[float] | None = None
    ) -> bool:
        """Payer: incur (channel, request id, amount, receipt seq) for each item, all in
        one write, if every request is new to the book and the deposits cover them all:
        True. Else nothing is written: False. `stamps` as for `owe_new`."""
        rows: list[tuple[str, str, int, int, bytes | None, float]] = []
        grew: dict[str, int] = {}
        for i, (channel, request_id, amount, seq) in enumerate(items):
            if amount <= 0 or seq < 0:
                return False
            stamp = self.now() if stamps is None else stamps[i]
            # A payer's row keeps no receipt (NULL: out of the index of what to invoice).
            rows.append((channel, request_id, amount, seq, None, stamp))
            grew[channel] = grew.get(channel, 0) + amount
        for channel, amount in grew.items():
            row = self.channel(channel)
            if row is None or amount > row.deposit_nano - row.owed_nano:
                return False
        return self._insert_new(rows, grew, "payer")

    def expect_new(self, rows: Sequence[ExpectedRow]) -> bool:
        """Payer: put requests on record (`PaymentBook.expect`) in one statement, if none
        is on record already: True. Else nothing is written: False (for one row: it was
        on record, and is kept)."""
        with self.transaction() as db:
            return insert_all(db, _EXPECT_NEW, rows)

    def _insert_new(
        self,
        rows: list[tuple[str, str, int, int, bytes | None, float]],
        grew: dict[str, int],
        side: Side,
    ) -> bool:
        if not rows:
            return True
        for channel in grew:
            row = self.channel(channel)
            if row is None or row.side != side:
                return False
        with self.transaction() as db:
            if not insert_all(db, _INSERT_NEW, rows):
                return False
            now = max(row[-1] for row in rows)
            for channel, amount in grew.items():
                if amount:
                    self._add_owed(db, self._require(channel, side), amount, now)
        return True
