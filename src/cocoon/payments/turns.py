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
        # Resolved once this turn's items are written (None: nothing queued).
        self._done: asyncio.Future[None] | None = None

    def add(self, item: T) -> None:
        """Queue `item` for the end of this turn (written now where no loop runs)."""
        self._items.append(item)
        if self._done is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._done = loop.create_future()
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (a voucher or a status page needs it on the book).
        Whoever waits in `written` gets the exception of a write that failed."""
        items, self._items = self._items, []
        done, self._done = self._done, None
        try:
            if items:
                self._write(items)
        except Exception as exc:
            if done is None:
                raise
            log.warning("writing %d queued book entries failed: %s", len(items), exc)
            done.set_exception(exc)
            done.add_done_callback(_retrieved)
        else:
            if done is not None:
                done.set_result(None)

    async def written(self) -> None:
        """Return once what was queued so far is written (not yet committed)."""
        if self._done is not None:
            await asyncio.shield(self._done)


def _retrieved(future: asyncio.Future[None]) -> None:
    """Nobody may wait for a failed turn: its exception is logged, not left unseen."""
    future.exception()
