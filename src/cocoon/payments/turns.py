"""Book writes gathered over one turn of the event loop and made together at its end.

Under load a node owes for many answers in one turn of its loop, each between
the TLS, sealing and HTTP work of its own request. The servers of a small
machine share cores, so by the time a request writes to the book the caches
hold some other process's work: each write paid to bring SQLite's code and
pages back. Written one after another at the end of the turn, they pay it once.
At c=64 with payments on this took 40-80 µs of CPU off each request in the
client (`cocoon bench`, four alternated rounds) and more off each worker;
the writes, their transactions and their commits are the same as before.

A write that something must wait for (a worker's receipt leaves once it is on
disk) is awaited with `written()`, then the book's `durable()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TurnWrites(Generic[T]):
    """Items to write, queued during a turn and handed to `write` together at its end."""

    def __init__(self, write: Callable[[list[T]], None]) -> None:
        self._write = write
        self._items: list[T] = []
        self._scheduled = False  # a flush is due at the end of this turn
        # One future for each waiter, resolved once this turn's items are written: a
        # waiter cancelled leaves the others be. (One future shared through
        # `asyncio.shield` cost each waiter a turn of the loop more: at c=1, a turn on
        # the path of every request, in the worker and twice in the proxy.)
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, item: T) -> None:
        """Queue `item` for the end of this turn (written now where no loop runs)."""
        self._items.append(item)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (a voucher or a status page needs it on the book).
        Whoever waits in `written` gets the exception of a write that failed."""
        items, self._items = self._items, []
        waiters, self._waiters = self._waiters, []
        scheduled, self._scheduled = self._scheduled, False
        try:
            if items:
                self._write(items)
        except Exception as exc:
            if not scheduled:
                raise
            log.warning("writing %d queued book entries failed: %s", len(items), exc)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def written(self) -> None:
        """Return once what was queued so far is written (not yet committed)."""
        if self._scheduled:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
