"""A book that holds some of its rows in memory for a while, and writes them in one go.

A worker's receipts (journal.py), a client's debts (lazy_debts.py) and a
proxy's bills (bill_journal.py) are owed in memory at once and written to the
book's rows later, many at once (`fold`). Whoever reads or writes the rows, or
a channel not held in memory, sees them written first; a channel held in
memory is current (so the settle tick, which reads every channel, folds
nothing while they are).

Except a voucher, where the rows held keep the time they were owed at
(`stamped`): the worker's receipts, the proxy's bills and the client's debts
(journaled before a voucher covers them). A voucher settles
what a channel owed before it by time (the channel's `settled_at`), and what
it owes is current in memory, so a voucher signed or accepted needs none of
the rows, and a row folded after it with an earlier stamp is as settled as one
written before it. At c=1 a fold before every voucher was most of the p99 that
payments added: about 80 bills, 1.4 ms and its commit 0.7 ms in the proxy's
turn, once every 80 requests or so (issue 18).

A voucher signed from memory is only as right as memory. The proxy journals
only the first receipt of a request its rows do not hold (one billed before
is refused when it comes again, and a worker's invoice for a later receipt is
billed by what it adds, in a transaction: proxy/settlement.py), so what its
channels owe in memory is exact. So is a client's: it holds in memory only
an answer's first debt, of a request it sent since it started and was never
invoiced for, and owes anything else one by one (client/paying.py). A
worker's memory may count a request served again after a restart in full
until a fold: as a payee that only delays settling.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Sized
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from .book import PaymentBook, pays_all
from .rows import ChannelRow
from .slices import FoldSlices
from .vouchers import SignedVoucher


class FoldsFirst(PaymentBook):
    """Folds what it holds (`_pending`, and a fold's `_slices` not written yet) before
    any read or write of the rows."""

    _pending: Sized
    _slices: FoldSlices[Any, Any]
    # Whether the rows held keep when they were owed (a fold writes them so stamped).
    stamped = False
    # Inside a voucher of a stamped book: its transaction writes the channel alone.
    _settling = False
    # Inside a slice of a fold (slices.py): it writes part of what is held, folding nothing.
    _slicing = False

    def fold(self) -> None:
        raise NotImplementedError

    def holds(self, channel: str, request_id: str) -> bool:
        """Whether a row of this request is held in memory, not written yet."""
        raise NotImplementedError

    def _holding(self) -> bool:
        """Whether anything is held in memory (a fold being written in slices included)."""
        return bool(self._pending or self._slices.held)

    def transaction(self, *, lazy: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        if not (self._settling or self._slicing):
            self.fold()
        return super().transaction(lazy=lazy)

    def _write_slice(self, channels: Collection[str], write: Callable[[], object]) -> None:
        """Write part of what is held (`write`, a slice of a fold) in a transaction that
        folds nothing first, and is lazy: what it writes is in a journal already, so the
        slices of 50 ms share a commit (slices.py). Memory's rows of `channels` stay as
        they are: they count what is held still, which the rows do not. One not in
        memory stays out of it: reading it folds all that is held, as ever."""
        kept = {
            channel: row
            for channel in channels
            if (row := self._rows.pop(channel, None)) is not None
        }
        try:
            with self._folding_nothing(), self.transaction(lazy=True):
                write()
        finally:
            # What the write read into memory holds this slice, not what is held still.
            for channel in channels:
                self._rows.pop(channel, None)
        self._rows.update(kept)

    @contextmanager
    def _without_fold(self) -> Iterator[None]:
        before, self._settling = self._settling, True
        try:
            yield
        finally:
            self._settling = before

    # What the chain says of a channel changes its deposit and what was redeemed, never
    # what it owes: written without a fold, memory's row kept current in place. (A fold
    # first was 3-28 ms of the proxy's and the workers' turn at each redeem and top-up,
    # at c=64 with payments on: the slowest of their answers.)

    def set_chain_state(self, channel: str, *, deposit_nano: int, redeemed_nano: int) -> None:
        row = self._rows.get(channel)
        with self._folding_nothing():
            super().set_chain_state(channel, deposit_nano=deposit_nano, redeemed_nano=redeemed_nano)
        if row is not None:
            self._rows[channel] = replace(
                row,
                deposit_nano=max(row.deposit_nano, deposit_nano),
                redeemed_nano=max(row.redeemed_nano, redeemed_nano),
            )

    def mark_redeemed(self, channel: str, redeemed_nano: int) -> None:
        row = self._rows.get(channel)
        with self._folding_nothing():
            super().mark_redeemed(channel, redeemed_nano)
        if row is not None:
            self._rows[channel] = replace(row, redeemed_nano=max(row.redeemed_nano, redeemed_nano))

    @contextmanager
    def _folding_nothing(self) -> Iterator[None]:
        """Writes that need nothing held written first (a slice of a fold, a channel's
        own row)."""
        before, self._slicing = self._slicing, True
        try:
            yield
        finally:
            self._slicing = before

    def channel(self, channel: str) -> ChannelRow | None:
        # A channel held in memory is current; one read from the rows needs them written.
        if channel not in self._rows and not self._slicing and self._holding():
            self.fold()
        return super().channel(channel)

    def paid_for(self, channel: str, request_id: str) -> int:
        self.fold()
        return super().paid_for(channel, request_id)

    def voucher(self, channel: str) -> SignedVoucher | None:
        if not self.stamped:
            return super().voucher(channel)  # its transaction folds first
        with self._without_fold():
            return super().voucher(channel)

    def accept(self, signed: SignedVoucher, request_id: str = "") -> int:
        # It decides what the voucher settles, and stamps it, before its transaction:
        # what a stamped book holds is settled by time, but a voucher that pays less
        # than all is put on its request's row, which must be written.
        channel = signed.voucher.channel
        row = self.channel(channel)
        if not self.stamped or (
            request_id
            and not (row is not None and pays_all(row, signed))
            and self.holds(channel, request_id)
        ):
            self.fold()
        with self._without_fold():
            return super().accept(signed, request_id)

    def unsettled(
        self, channel: str, limit: int = 1000, *, before: float | None = None
    ) -> list[tuple[str, bytes]]:
        self.fold()
        return super().unsettled(channel, limit, before=before)
