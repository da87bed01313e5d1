"""Which receipts of an answer the proxy bills, and which the client gets to see (sans-IO).

With payments on, the client must never hold a receipt the proxy has not billed:
a voucher covering all the proxy bills then covers every request the client
knows, which is what lets the proxy settle a channel's requests in bulk.
"""

from __future__ import annotations

from typing import Any

from cocoon.proxy.tab import PARTIAL_BILL_INTERVAL_S, Tab
from cocoon.wire.messages import AnswerEnd, AnswerPart, Request

REQUEST = Request("r1", "m", 1000, 16, 1000, ["w"], b"sealed")


class Desk:
    """Stands in for `Settlement`: what the tab asked it to bill, in order."""

    def __init__(self) -> None:
        self.billed: list[tuple[bytes, bool]] = []

    def bill(self, receipt: bytes, worker: Any, tab: Tab, *, end: bool = False) -> None:
        self.billed.append((receipt, end))

    async def durable(self) -> None:
        return None


def part(index: int, receipt: bytes | None) -> AnswerPart:
    return AnswerPart("r1", index, b"chunk", receipt, b"tag" if receipt else b"")


async def test_with_payments_a_partial_receipt_not_billed_is_held_back() -> None:
    desk = Desk()
    tab = Tab(desk, REQUEST, "client", b"h", "channel", now=0.0)  # type: ignore[arg-type]
    first = await tab.take(part(0, b"receipt-0"), None, 0.1)  # type: ignore[arg-type]
    assert (first.receipt, first.receipt_tag) == (None, b"")
    assert first.sealed == b"chunk" and first.index == 0
    assert desk.billed == []
    # A second later the next partial one is billed, and goes on as it came.
    later = part(5, b"receipt-5")
    assert await tab.take(later, None, 0.1 + PARTIAL_BILL_INTERVAL_S) is later  # type: ignore[arg-type]
    assert desk.billed == [(b"receipt-5", False)]
    # The final receipt is always billed and always delivered.
    end = AnswerEnd("r1", 9, b"last", b"receipt-9", b"tag")
    assert await tab.take(end, None, 1.2) is end  # type: ignore[arg-type]
    assert desk.billed[-1] == (b"receipt-9", True)
    tab.flush(1.3)
    assert len(desk.billed) == 2  # nothing held back is left to bill


async def test_a_held_receipt_is_billed_when_the_stream_ends_without_a_final_one() -> None:
    desk = Desk()
    tab = Tab(desk, REQUEST, "client", b"h", "channel", now=0.0)  # type: ignore[arg-type]
    await tab.take(part(0, b"receipt-0"), None, 0.1)  # type: ignore[arg-type]
    await tab.take(part(3, b"receipt-3"), None, 0.2)  # type: ignore[arg-type]
    tab.flush(0.3)  # cut short: what the worker proved last is billed (and invoiced)
    assert desk.billed == [(b"receipt-3", False)]


async def test_without_payments_every_receipt_reaches_the_client() -> None:
    desk = Desk()
    tab = Tab(desk, REQUEST, "client", b"h", None, now=0.0)  # type: ignore[arg-type]
    frame = part(0, b"receipt-0")
    assert await tab.take(frame, None, 0.1) is frame  # type: ignore[arg-type]
    assert desk.billed == []
