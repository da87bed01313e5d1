"""Book writes gathered over a turn of the event loop (payments/turns.py)."""

from __future__ import annotations

import asyncio

import pytest

from cocoon.payments.errors import LedgerError
from cocoon.payments.turns import TurnWrites


class Writer:
    """Records each call: which items were written together."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> None:
        if self.fail_on in items:
            raise LedgerError(f"cannot write {self.fail_on}")
        self.calls.append(list(items))


async def test_items_of_one_turn_are_written_together_at_its_end() -> None:
    writer = Writer()
    turns = TurnWrites(writer)
    for item in ("a", "b", "c"):
        turns.add(item)
    assert writer.calls == []  # nothing before the turn ends
    await turns.written()
    assert writer.calls == [["a", "b", "c"]]
    turns.add("d")
    await turns.written()
    assert writer.calls == [["a", "b", "c"], ["d"]]


async def test_writers_of_several_tasks_share_one_write() -> None:
    writer = Writer()
    turns = TurnWrites(writer)

    async def owe(item: str) -> str:
        turns.add(item)
        await turns.written()
        # Whoever returns from `written` finds its item written.
        assert any(item in call for call in writer.calls)
        return item

    assert await asyncio.gather(*(owe(str(i)) for i in range(5))) == [str(i) for i in range(5)]
    assert writer.calls == [["0", "1", "2", "3", "4"]]


async def test_flush_writes_now_and_nothing_twice() -> None:
    writer = Writer()
    turns = TurnWrites(writer)
    turns.add("a")
    turns.flush()
    assert writer.calls == [["a"]]
    await turns.written()  # nothing left: returns at once
    await asyncio.sleep(0)  # the turn's scheduled flush finds nothing
    assert writer.calls == [["a"]]


def test_without_a_loop_an_item_is_written_at_once() -> None:
    writer = Writer()
    turns = TurnWrites(writer)
    turns.add("a")
    turns.add("b")
    assert writer.calls == [["a"], ["b"]]


def test_without_a_loop_a_failed_write_raises() -> None:
    turns = TurnWrites(Writer(fail_on="bad"))
    with pytest.raises(LedgerError, match="cannot write bad"):
        turns.add("bad")


async def test_a_failed_write_fails_who_waits_for_it_and_not_the_next_turn() -> None:
    writer = Writer(fail_on="bad")
    turns = TurnWrites(writer)
    turns.add("ok")
    turns.add("bad")
    with pytest.raises(LedgerError, match="cannot write bad"):
        await turns.written()
    turns.add("later")
    await turns.written()
    assert writer.calls == [["later"]]


async def test_a_failed_write_nobody_waits_for_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    turns = TurnWrites(Writer(fail_on="bad"))
    turns.add("bad")
    await asyncio.sleep(0)
    assert "writing 1 queued book entries failed: cannot write bad" in caplog.text


async def test_a_waiter_cancelled_leaves_the_others_and_the_write_be() -> None:
    writer = Writer()
    turns = TurnWrites(writer)

    async def owe(item: str) -> str:
        turns.add(item)
        await turns.written()
        return item

    gone = asyncio.ensure_future(owe("a"))
    await asyncio.sleep(0)  # it waits for the end of the turn now
    gone.cancel()
    assert await owe("b") == "b"
    assert gone.cancelled() and writer.calls == [["a", "b"]]


async def test_a_waiter_resumes_in_the_turn_after_the_write() -> None:
    """Who waits for the write runs in the very next turn of the loop: a turn on the
    path of every request in the worker and the proxy."""
    turns = TurnWrites(Writer())
    order: list[str] = []

    async def waiter() -> None:
        turns.add("a")
        await turns.written()
        order.append("resumed")

    async def ticker() -> None:
        for turn in range(4):
            order.append(f"turn {turn}")
            await asyncio.sleep(0)

    await asyncio.gather(waiter(), ticker())
    assert order.index("resumed") < order.index("turn 2")
