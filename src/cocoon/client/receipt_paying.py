"""When the receipts of one streamed answer are paid.

Each payment is a durable write of the books, so a long answer pays its partial
receipts at most once a `PAY_INTERVAL_S`, its final one at once, and, when it
is cut short, the latest receipt the client accepted (what the worker did is
owed even if the app went away).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..crypto.receipts import Receipt

# A streamed answer pays its partial receipts at most this often (the final one always).
PAY_INTERVAL_S = 1.0


class ReceiptPaying:
    """The receipts of one answer already paid, and whether the next one is due."""

    def __init__(self, pay: Callable[[Receipt, bool], None] | None) -> None:
        # None while payments are off: receipts are still checked, never paid. Told
        # whether a receipt is the answer's first paid (payments/lazy_debts.py).
        self._pay = pay
        self.paid_seq = -1
        self.paid_at = time.monotonic()

    def due(self, final: bool) -> bool:
        """Whether a receipt arriving now is to be checked against the answer and paid."""
        if final:
            return True
        return self._pay is not None and time.monotonic() - self.paid_at >= PAY_INTERVAL_S

    def pay(self, receipt: Receipt | None) -> bool:
        """Pay ``receipt`` if it proves more than the last one paid; whether it was paid."""
        if self._pay is None or receipt is None or receipt.seq <= self.paid_seq:
            return False
        self._pay(receipt, self.paid_seq < 0)
        self.paid_seq, self.paid_at = receipt.seq, time.monotonic()
        return True
