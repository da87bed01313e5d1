"""WAL checkpoints of a node's book, off the event loop.

SQLite copies the write-ahead log back into the database file (a checkpoint,
with an fsync) from inside whichever COMMIT takes the log past
`wal_autocheckpoint` pages, by default 1,000. With payments on, that was most
of what a commit cost: in a loop of the proxy's per-request writes, eight
requests a transaction, commits took 95-105 µs a request with the automatic
checkpoint and 20-27 µs without it, and a checkpoint every 2,000 requests
added 12-20 µs (a page written many times between checkpoints is copied
once). So the node's own connection checkpoints only as a backstop, far out,
and a second connection checkpoints passively every few seconds in a
worker thread (the sqlite3 module lets go of the GIL while SQLite works), so
the event loop never waits for the copy or its fsync.

What a kill -9 can lose is unchanged: a commit is in the log, and so in the
operating system's cache, when it returns; a checkpoint only moves committed
pages, and SQLite recovers from one cut short.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

# Seconds between passive checkpoints while the node commits: a page written many
# times between two of them is copied once (at 1 s they still cost each node about
# 20-30 µs a request at c=64, py-spy).
CHECKPOINT_INTERVAL_S = 4.0
# The connection's own checkpoint, for a book written without a running loop (tools,
# tests): pages of log (4 KiB each in a new book, `store.PAGE_SIZE`: 16 MiB) before a
# commit copies them back itself.
BACKSTOP_PAGES = 4_000


class Checkpointer:
    """Passive checkpoints of one WAL database file, from a worker thread."""

    def __init__(self, db: sqlite3.Connection, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._path = _wal_file(db)
        if self._path is not None:
            db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        self._other: sqlite3.Connection | None = None
        # Held by the thread while it checkpoints, so `close` never closes under it.
        self._lock = threading.Lock()
        self._running: asyncio.Future[None] | None = None
        self._last = time.monotonic()
        self._closed = False
        self.checkpoints = 0  # for tests and status pages

    def after_commit(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """A commit happened: start a checkpoint in a thread if one is due."""
        if self._path is None or loop is None or self._running is not None or self._closed:
            return
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self._running = loop.run_in_executor(None, self._checkpoint)
        self._running.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._running = None
        if not future.cancelled() and future.exception() is not None:
            # A busy or failed checkpoint leaves the log to the next one (or the backstop).
            self._last = time.monotonic()

    async def idle(self) -> None:
        """Return once no checkpoint is running (for tests and an orderly stop)."""
        if self._running is not None:
            await asyncio.wait([self._running])

    def _checkpoint(self) -> None:
        with self._lock:
            if self._closed or self._path is None:
                return
            if self._other is None:
                self._other = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            self._other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1

    def close(self) -> None:
        """Wait for a running checkpoint, then close its connection."""
        with self._lock:
            self._closed = True
            if self._other is not None:
                self._other.close()
                self._other = None


def _wal_file(db: sqlite3.Connection) -> str | None:
    """The database file behind `db`, if it is one in WAL mode (not in memory)."""
    mode = db.execute("PRAGMA journal_mode").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        return None
    for _, name, file in db.execute("PRAGMA database_list").fetchall():
        if name == "main" and file:
            return str(file)
    return None
