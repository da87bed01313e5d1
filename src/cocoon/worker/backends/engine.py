"""Admission to a blocking inference engine: a few engine slots, a bounded queue.

A built-in engine (llama.cpp, sentence-transformers) is blocking C code that
runs one request per slot (a model context) in a thread of its own. Requests
beyond the slots wait in a FIFO queue of bounded length; past that bound a
request is refused at once with a retryable 503 (`no_capacity`), so that the
proxy can try another worker instead of letting latency grow without end.

`EnginePool` is used from the event loop thread only; engine threads hand
slots back through the loop (a done callback of their future).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

from cocoon.worker.backends.base import BackendError

T = TypeVar("T")


class EnginePool(Generic[T]):
    """Engine slots handed out in arrival order; at most `max_queue` requests wait."""

    def __init__(self, slots: list[T], max_queue: int) -> None:
        if not slots:
            raise ValueError("an engine pool needs at least one slot")
        self.size = len(slots)
        self.max_queue = max(0, max_queue)
        self._free: collections.deque[T] = collections.deque(slots)
        self._waiters: collections.deque[asyncio.Future[T]] = collections.deque()
        # Futures of the running loop, made per call: the pool itself is not
        # bound to any one event loop.
        self._idle_waiters: list[asyncio.Future[None]] = []

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> T:
        """A free slot, after waiting in line; BackendError(no_capacity) when the line is full."""
        if self._free and not self.waiting:
            return self._free.popleft()
        if self.waiting >= self.max_queue:
            raise BackendError(
                "no_capacity",
                f"the engine is busy ({self.size} running, {self.waiting} waiting)",
                503,
                retryable=True,
            )
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a slot in the same instant we were cancelled: pass it on.
                self.release(waiter.result())
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self, slot: T) -> None:
        """Give a slot back: to the first live waiter, else to the free list."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)
        if len(self._free) == self.size:
            idle_waiters, self._idle_waiters = self._idle_waiters, []
            for idle in idle_waiters:
                if not idle.done():
                    idle.set_result(None)

    async def wait_idle(self) -> None:
        """Return once every slot is free (its engine thread has really stopped)."""
        if len(self._free) == self.size:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter
