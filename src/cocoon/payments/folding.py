"""A book that holds some of its rows in memory for a while, and writes them in one go.

A worker's receipts (journal.py), a client's debts (lazy_debts.py) and a
proxy's bills (bill_journal.py) are owed in memory at once and written to the
book's rows later, many at once (`fold`). Whoever reads or writes the rows, or
a channel not held in memory, sees them written first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sized
from contextlib import AbstractContextManager

from .book import PaymentBook
from .rows import ChannelRow, Side
from .vouchers import SignedVoucher


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

    def accept(self, signed: SignedVoucher, request_id: str = "") -> int:
        # It decides what the voucher settles, and stamps it, before its transaction.
        self.fold()
        return super().accept(signed, request_id)

    def unsettled(
        self, channel: str, limit: int = 1000, *, before: float | None = None
    ) -> list[tuple[str, bytes]]:
        self.fold()
        return super().unsettled(channel, limit, before=before)
