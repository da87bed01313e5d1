"""Group commit: one SQLite transaction for all a node writes in one turn of its event loop.

Every durable write of a node's books (a request expected, a receipt billed,
owed, paid) was a transaction of its own, and the commit is most of its cost:
with payments on, COMMIT alone took 40-60 % of the CPU each node spent on
payments (py-spy, `cocoon bench --payments`, c=64 non-streamed). Under load many
requests write in the same turn of the event loop, so they share one
transaction: the first write opens it and schedules its commit at the start of
the next turn (`loop.call_soon`); every write is a savepoint inside it, so one
that fails undoes itself and nothing of the others.

The guarantee is the one each node had with a transaction per write: nothing
that depends on a write leaves the node before the write is on disk. A sender
waits for `durable()` (or hands `then` a callback), so kill -9 at any moment
loses only writes whose messages had not left yet. At c=1 the wait is one turn
of the loop; without a running loop (tools, tests driving a book directly)
each write commits as it ends. WAL checkpoints, which SQLite would run inside
a commit, run in a thread instead (`checkpoints.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from .checkpoints import Checkpointer
from .errors import LedgerError

# The longest a lazy write waits for a commit that something else needs.
LAZY_S = 0.05


class GroupCommit:
    """The open transaction of one SQLite connection, committed once per loop turn."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._open = False  # a transaction is open with writes not yet committed
        # It holds a write that is not lazy: `durable` waits for its commit.
        self._needed = False
        self._depth = 0  # nesting of `write` blocks
        self._scheduled = False
        self._waiters: list[asyncio.Future[None]] = []
        self._then: list[Callable[[], object]] = []
        # The timer committing lazy writes that nothing else committed.
        self._lazy: asyncio.TimerHandle | None = None
        # Called when a write is undone: whoever keeps rows in memory drops them.
        self._undone: list[Callable[[], object]] = []
        self.checkpoints = Checkpointer(db)
        # For status and tests: transactions committed, and writes they carried.
        self.commits = 0
        self.writes = 0

    @property
    def pending(self) -> bool:
        """Writes are open that are not on disk yet."""
        return self._open

    def write(self, *, lazy: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        """One atomic write: in the loop's open transaction (committed at the next turn),
        else committed as it ends. Nested writes are part of the outer one.

        `lazy`: nothing waits for this write, so it may wait for the next commit that
        something needs (`then`, a write that is not lazy), or `LAZY_S`, whichever
        comes first; `durable` does not wait for it. At c=1 a client's record of what
        it owes then shares the commit of its next request's record instead of paying
        one of its own."""
        return _Write(self, lazy)

    def _rollback(self) -> None:
        """Undo the open transaction: its only write failed."""
        self._db.execute("ROLLBACK")
        waiters, then = self._end()
        self._on_undone()
        # Whoever waited for this transaction waited for nothing: it is not there.
        _release(waiters, then)

    def _end(self) -> tuple[list[asyncio.Future[None]], list[Callable[[], object]]]:
        """The open transaction ends now: no lazy timer for it; who waited on it."""
        self._open = False
        self._needed = False
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        waiters, self._waiters = self._waiters, []
        then, self._then = self._then, []
        return waiters, then

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit at the start of the loop's next turn."""
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._commit_scheduled)

    def _commit_lazy(self) -> None:
        self._lazy = None
        if not self._scheduled:
            self._commit_scheduled()

    def commit(self) -> bool:
        """Commit what is open now (a rare message that must leave at once, or the loop's
        turn); False, and nothing done, inside a write (its turn commits it)."""
        if self._depth:
            return False
        if not self._open:
            return True
        waiters, then = self._end()
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            self._on_undone()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(LedgerError(f"the book could not commit: {exc}"))
            raise LedgerError(f"the book could not commit: {exc}") from exc
        self.commits += 1
        _release(waiters, then)
        return True

    def on_undone(self, callback: Callable[[], object]) -> None:
        """Call `callback` whenever a write is rolled back (a cache of rows is stale)."""
        self._undone.append(callback)

    def _on_undone(self) -> None:
        for callback in self._undone:
            callback()

    def close(self) -> None:
        """Commit what is open (lazy writes), stop checkpointing (the connection itself
        is its owner's to close)."""
        with contextlib.suppress(LedgerError):
            self.commit()
        self.checkpoints.close()

    async def durable(self) -> None:
        """Return once everything written so far is on disk, lazy writes aside: nothing
        waits for those, and a transaction of lazy writes alone keeps its `LAZY_S`. (At
        c=1 the proxy and the workers wait here for every answer; committing a fold's
        slice there put its commit on the next request's path, every slice.)"""
        if not self._needed:
            return
        loop = asyncio.get_running_loop()
        self._schedule(loop)  # a `then` without a loop scheduled none
        waiter = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def then(self, callback: Callable[[], object]) -> None:
        """Call `callback` once everything written so far is on disk (now, if it is)."""
        if self._open:
            self._needed = True
            self._then.append(callback)
            loop = _running_loop()
            if loop is not None:
                self._schedule(loop)
        else:
            callback()

    def _commit_scheduled(self) -> None:
        self._scheduled = False
        if self._depth:  # a write spans a turn (it awaited): the turn after commits it
            loop = _running_loop()
            if loop is not None:
                self._scheduled = True
                loop.call_soon(self._commit_scheduled)
            return
        # A failed commit fails its waiters; a write after it opens a new transaction.
        with contextlib.suppress(LedgerError):
            self.commit()
        self.checkpoints.after_commit(_running_loop())


class _Write:
    """One `GroupCommit.write` (a class, not a generator: several run per request)."""

    __slots__ = ("_commits", "_first", "_lazy", "_loop", "_nested")

    def __init__(self, commits: GroupCommit, lazy: bool) -> None:
        self._commits = commits
        self._lazy = lazy
        self._nested = False
        self._first = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> sqlite3.Connection:
        c = self._commits
        db = c._db
        if c._depth:
            c._depth += 1
            self._nested = True
            return db
        loop = self._loop = _running_loop()
        # The first write of a transaction needs no savepoint: undoing it is undoing
        # the transaction (two statements fewer a write at c=1, where each write is
        # the first of its own).
        first = self._first = not c._open
        if first:
            db.execute("BEGIN IMMEDIATE")
            c._open = True
        if not self._lazy:
            c._needed = True
        if loop is not None:
            if not self._lazy:
                c._schedule(loop)
            elif not c._scheduled and c._lazy is None:
                c._lazy = loop.call_later(LAZY_S, c._commit_lazy)
        if not first:
            db.execute("SAVEPOINT w")
        c._depth = 1
        return db

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        c = self._commits
        if self._nested:
            c._depth -= 1
            return
        c._depth = 0
        if kind is not None:
            if self._first:
                c._rollback()
            else:
                c._db.execute("ROLLBACK TO w")
                c._db.execute("RELEASE w")
                c._on_undone()
                if self._loop is None:
                    c.commit()
            return
        if not self._first:
            c._db.execute("RELEASE w")
        c.writes += 1
        if self._loop is None:
            c.commit()


def _release(waiters: list[asyncio.Future[None]], then: list[Callable[[], object]]) -> None:
    """Let go of whoever waited for a transaction that has ended."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    for callback in then:
        callback()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
