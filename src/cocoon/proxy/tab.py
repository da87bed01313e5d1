"""A request's tab at the proxy: which receipts of its answer are billed, and when.

The relay opens one (`Settlement.open`) before a request leaves for a worker
and gives it each receipt as its frame goes by; the tab bills every final
receipt, a partial one at most once a second, holds back from the client one
not billed, and bills the latest partial one when an attempt ends without a
final one. What billing writes is `bills.py`'s.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..crypto.receipts import Receipt
from ..wire.messages import AnswerEnd, AnswerPart, Request
from .worker_state import WorkerInfo


class Desk(Protocol):
    """Where a tab's receipts are billed (`Settlement`): the tab needs only these."""

    def bill(
        self, receipt_bytes: bytes, worker: WorkerInfo, tab: Tab, *, end: bool = False
    ) -> Receipt | None: ...

    async def durable(self) -> None: ...


# A partial receipt is verified and billed at most this often per request (the
# final one always is). Verifying costs an Ed25519 check and a ledger write; a
# partial receipt only matters if no final one follows (the worker died, the
# client left), and then the latest one is billed when the stream ends.
PARTIAL_BILL_INTERVAL_S = 1.0


class Tab:
    """One request's account: the relay gives it each receipt of the answer once."""

    __slots__ = (
        "_billed_at",
        "_pending",
        "billed",
        "channel",
        "client",
        "desk",
        "envelope_hash",
        "failure",
        "request",
    )

    def __init__(
        self,
        desk: Desk,
        request: Request,
        client: str,
        envelope_hash: bytes,
        channel: str | None,
        now: float,
    ) -> None:
        self.desk = desk
        self.request = request
        self.client = client  # the client's key id
        self.envelope_hash = envelope_hash
        self.channel = channel  # the client's payment channel, with payments on
        # The latest partial receipt not billed yet (and its worker), and when one last was.
        self._pending: tuple[bytes, WorkerInfo] | None = None
        self._billed_at = now
        # Why a receipt verified for this request could not be billed (the book
        # refused it): the frame carrying it does not go on.
        self.failure: Exception | None = None
        # A receipt of this request was billed already: its next one updates rows.
        self.billed = False

    async def take(
        self, frame: AnswerPart | AnswerEnd, worker: WorkerInfo, now: float
    ) -> AnswerPart | AnswerEnd:
        """A frame with a receipt is about to go to the client: returns, once what it
        bills is on disk, the frame to send; a bad final receipt raises PeerError (the
        answer fails: nothing proves what it cost).

        A partial receipt not billed now is held and, with payments on, taken off the
        frame: the client never holds a receipt this proxy has not billed, so what the
        client owes for a request is never more than what this proxy bills for it, even
        after a crash of this proxy loses what it held. That is what lets a voucher
        covering all the channel owes settle all its requests (`PaymentBook.accept`).
        Forwarded, a receipt billed only later (or, lost in a crash, from the worker's
        invoice) was paid by a voucher that then seemed to cover a request the client
        never saw, which went unpaid for good (seen in the kill -9 test under load).
        A stream cut short is billed its held receipt, which the client is invoiced."""
        assert frame.receipt is not None
        end = isinstance(frame, AnswerEnd)
        if end or now - self._billed_at >= PARTIAL_BILL_INTERVAL_S:
            self._pending = None
            self._billed_at = now
            self.desk.bill(frame.receipt, worker, self, end=end)
            await self.desk.durable()
            if self.failure is not None:
                raise self.failure
            return frame
        self._pending = (frame.receipt, worker)
        if self.channel is None:
            return frame  # no channel's books to keep in step
        return msgspec.structs.replace(frame, receipt=None, receipt_tag=b"")

    def flush(self, now: float) -> None:
        """An attempt ended: if no final receipt came, bill what the worker proved it served."""
        pending, self._pending = self._pending, None
        self._billed_at = now
        if pending is not None:
            self.desk.bill(pending[0], pending[1], self)
