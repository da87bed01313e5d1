"""A book that holds some of its rows in memory for a while, and writes them in one go.

A worker's receipts (journal.py) and a client's debts (lazy_debts.py) are owed
in memory at once and written to the book's rows later, many at once (`fold`).
Whoever reads or writes the rows, or a channel not held in memory, sees them
written first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sized
from contextlib import AbstractContextManager

from .book import PaymentBook
from .rows import ChannelRow, Side


class FoldsFirst(PaymentBook):
    """Folds what it holds (`_pending`) before any read or write of the rows."""

    _pending: Sized

    def fold(self) -> None:
        raise NotImplementedError

    def transaction(self, *, lazy: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        self.fold()
        return super().transaction(lazy=lazy)

    def channel(self, channel: str) -> ChannelRow | None:
        # A channel held in memory is current; one read from the rows needs them written.
        if self._pending and channel not in self._rows:
            self.fold()
        return super().channel(channel)

    def channels(self, side: Side | None = None) -> list[ChannelRow]:
        self.fold()
        return super().channels(side)

    def paid_for(self, channel: str, request_id: str) -> int:
        self.fold()
        return super().paid_for(channel, request_id)
