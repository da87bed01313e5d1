"""EnginePool: slots in arrival order, a bounded line, then a retryable 503."""

from __future__ import annotations

import asyncio

import pytest

from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.engine import EnginePool


async def test_requests_past_the_slots_wait_in_order() -> None:
    pool = EnginePool(["ctx"], max_queue=2)
    first = await pool.acquire()
    second = asyncio.create_task(pool.acquire())
    third = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    assert pool.waiting == 2
    pool.release(first)
    assert await second == "ctx"
    assert not third.done()
    pool.release("ctx")
    assert await third == "ctx"
    pool.release("ctx")
    assert pool.busy == 0


async def test_a_full_line_is_refused_at_once_with_503() -> None:
    pool = EnginePool(["ctx"], max_queue=1)
    await pool.acquire()
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    with pytest.raises(BackendError) as info:
        await pool.acquire()
    assert (info.value.code, info.value.status, info.value.retryable) == ("no_capacity", 503, True)
    waiting.cancel()


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    pool = EnginePool(["ctx"], max_queue=1)
    held = await pool.acquire()
    gone = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert pool.waiting == 0
    # Its place is free again, and the slot goes to the next live request.
    later = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    pool.release(held)
    assert await later == "ctx"
