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
reads the book's rows (a voucher signed, a chain state, an invoice, a status
page), past `FOLD_ROWS` debts, and at close. A voucher is signed only after
a fold, so the rows it covers are on disk with it, as before. What a crash
loses is what the lazy write lost: debts no voucher covered, which the proxy
invoices again.

Unlike the proxy's bills and the worker's receipts (folding.py), a voucher
here cannot settle what memory holds by time: memory counts in full a request
the rows hold already (an invoice after a restart, when the requests folded
lately are forgotten), and only the fold finds that, so a voucher signed from
memory would pay it twice.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import LedgerError
from .folding import FoldsFirst
from .rows import ChannelRow

log = logging.getLogger(__name__)

# Debts that make a fold when no write came first (the memory they take).
FOLD_ROWS = 4096
# Requests folded lately: a later debt of one of them (a stream's) goes one by one.
FOLDED_KEPT = 4096

# One debt: channel, request id, what the request costs in all, receipt seq.
Debt = tuple[str, str, int, int]


class LazyDebtsBook(FoldsFirst):
    """A payer's `PaymentBook` whose debts for new requests wait in memory (`defer_new`)."""

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
    ) -> None:
        super().__init__(db, network_id=network_id, key=key)
        self._pending: dict[tuple[str, str], Debt] = {}
        self._folded: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.folds = 0  # for tests

    def defer_new(self, items: Sequence[Debt]) -> bool:
        """Owe new requests' debts in memory now, to write later: True. False, and
        nothing owed, if one is not new to memory (a stream's later receipt, an invoice
        of a request owed before) or a deposit cannot cover them: owe them one by one
        (`PayerSide.owe`), which folds these first and says why."""
        grew: dict[str, int] = {}
        keys = set()
        for channel, request_id, amount, seq in items:
            key = (channel, request_id)
            if amount <= 0 or seq < 0 or key in keys or key in self._pending:
                return False
            if key in self._folded:  # folded lately: the rows hold it, memory does not
                return False
            keys.add(key)
            grew[channel] = grew.get(channel, 0) + amount
        rows: dict[str, ChannelRow] = {}
        for channel, amount in grew.items():
            row = self.channel(channel)
            if row is None or row.side != "payer" or amount > row.deposit_nano - row.owed_nano:
                return False
            rows[channel] = row
        for item in items:
            self._pending[(item[0], item[1])] = item
        for channel, amount in grew.items():
            self._rows[channel] = rows[channel].owing(amount)
        if len(self._pending) >= FOLD_ROWS:
            self.fold()
        return True

    def fold(self) -> None:
        """Write the debts waiting in memory to the rows: those of new requests in one
        statement, any other (a request already in the rows: one served before a
        restart) as `incur` does."""
        if not self._pending:
            return
        debts = list(self._pending.values())
        self._pending = {}
        self.folds += 1
        # Read the channels again: memory holds these debts already, the rows do not.
        for channel in {debt[0] for debt in debts}:
            self._rows.pop(channel, None)
        with super().transaction(lazy=True):
            if not super().incur_new(debts):
                for debt in debts:
                    try:
                        super().incur(*debt)
                    except LedgerError as exc:  # the deposit shrank since: invoiced again
                        log.warning("debt for %s not written: %s", debt[1], exc)
        self._folded.update((debt[:2], None) for debt in debts)
        while len(self._folded) > FOLDED_KEPT:
            self._folded.popitem(last=False)

    @property
    def pending(self) -> int:
        """Debts owed in memory, not written to the rows yet."""
        return len(self._pending)

    def close(self) -> None:
        self.fold()
        super().close()
