"""A fold spread over turns of the event loop: a slice of rows at a time.

A book that holds rows in memory (a proxy's bills and requests on record, a
worker's receipts, a client's debts) folded them into its rows all at once
once `FOLD_ROWS` were held: 1,024 bills took the proxy's loop 12-16 ms, its
4,096 requests on record 30-50 ms, and the nodes reached their bounds
together, the proxy's two folds in the same turn. Every request in flight
waited: at c=64 with payments on, the slowest 1 % of answers came in the
100 ms in which those folds ran (issue 18), and at c=1 they made the p99.9.

Here the entries held when the bound is reached are set aside
(`FoldSlices.held`, their journal file closed) and written a slice at a time,
`GAP_S` apart, each one statement of as many rows as take about `SLICE_S`
(measured on the slice before): a request waits for one slice at most, and
the slices take a tenth of a core at most. Their transactions are lazy (what
they write is in the journal until the last is committed), so the slices of
50 ms share a commit. (Committed one by one, slices of 32 bills cost 1.3
times the CPU of the whole fold; eight to a commit, 1.1-1.2 times, and
slices of 64 about as much as the whole. Slices in consecutive turns were
no help at c=1: the node was idle between requests, wrote them back to
back, and on a machine whose nodes share a core, the request in flight
waited as long as for one fold.)
New entries go on being held, to a new journal file, meanwhile. A book still
answers from memory for the entries set aside, and whatever reads its rows
folds all it holds first, slices left included, as before. The set-aside
file goes once the last slice is committed; a kill -9 before that leaves it
to be folded at the next open, which writes a row folded already as it was.

How long a slice is depends on how requests come (`FoldSlices.arrived`).
Where they come one at a time (a node waiting on each, as at c=1), a slice
takes about `ALONE_SLICE_S`, `ALONE_GAP_S` apart: there the request in
flight waits for a whole slice, and 2 ms slices put a millisecond on the p99
(issue 18: with the proxy's bills not folded during a load at all, the c=1
p99 over no payments went from +1.15 to +0.54 ms). Short slices cost more
CPU a row (a few statements each), but a node that waits on each request
has it to spare. Where requests come in batches (a node busy, as at c=64) the rate is
what counts, and a slice takes `SLICE_S`.

Without a running loop (tools, tests driving a book directly) a fold is
whole, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from itertools import islice
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")
E = TypeVar("E")

# CPU time a slice may take: a request in flight waits for one slice at most. Slices of
# 0.5 ms cost the proxy 10-15 µs a request more than whole folds at c=64 (a commit and
# a few statements each); slices of 2 ms about what whole folds did.
SLICE_S = 0.002
# Rows of the first slice of a fold (the next are sized to take `SLICE_S`), and the most.
CHUNK = 32
MAX_ROWS = 1024
# Time between two slices: at most a tenth of a core goes to them. A proxy at 1,000
# requests a second folds 1,024 bills (about 12 ms to write) every second: 120 ms.
GAP_S = 0.02
# Where requests come one at a time: short slices, closer together (3 % of a core at
# most, which such a node has to spare). The rows a book takes at a time, averaged
# (`FoldSlices.arrived`), are at most `ALONE_ROWS` there: one, as a rule.
ALONE_SLICE_S = 0.0003
ALONE_GAP_S = 0.01
ALONE_ROWS = 1.5
# Weight of the newest count in that average.
_AVERAGE = 0.05


class FoldSlices(Generic[K, E]):
    """The entries of one fold, written a slice every `GAP_S`, each about `SLICE_S` long."""

    def __init__(self, write: Callable[[list[E]], None], *, chunk: int | None = None) -> None:
        self._write = write
        # Rows in the next slice: `chunk` always where given, else fitted to `SLICE_S`.
        self.size = chunk or CHUNK
        self._fixed = chunk is not None
        # Set aside for this fold, oldest first; still held (the book answers from them).
        self.held: dict[K, E] = {}
        self._done: Callable[[], None] | None = None
        self._handle: asyncio.Handle | None = None
        # How the next slice is scheduled: `GAP_S` later on the running loop, or a test's.
        self.schedule: Callable[[Callable[[], None]], object] | None = None
        # Rows the book takes at a time, averaged (`arrived`).
        self.rows_at_once = 1.0
        # For status pages and tests: slices written.
        self.slices = 0

    def arrived(self, rows: int) -> None:
        """The book took `rows` new entries at once: how requests come (one at a time,
        or in batches) sets how long a slice is."""
        self.rows_at_once += (rows - self.rows_at_once) * _AVERAGE

    @property
    def alone(self) -> bool:
        """Requests come one at a time: slices are short (`ALONE_SLICE_S`)."""
        return self.rows_at_once <= ALONE_ROWS

    def gap(self) -> float:
        """Time from one slice to the next."""
        return ALONE_GAP_S if self.alone else GAP_S

    @property
    def active(self) -> bool:
        """A fold is being written in slices."""
        return self._done is not None

    def ready(self) -> bool:
        """Whether a fold can be sliced now (a loop runs to turn)."""
        return self._scheduler() is not None

    def begin(self, held: int, bound: int, whole: Callable[[], object]) -> bool:
        """A book holds `held` entries, past its `bound`: True if a fold in slices is to
        begin now (the book sets them aside and `start`s it). Else the fold is whole
        (`whole`: no loop runs), or waits for the slices under way (whole once twice
        the bound is held)."""
        if self.active:
            if held >= 2 * bound:
                whole()
            return False
        if not self.ready():
            whole()
            return False
        return True

    def start(self, entries: dict[K, E], done: Callable[[], None]) -> bool:
        """Write `entries` in slices, then call `done` (in the last slice's turn);
        False, and nothing taken, where no loop runs to turn (fold them whole)."""
        if self._scheduler() is None:
            return False
        assert not self.active, "one sliced fold at a time"
        self.held = entries
        self._done = done
        self._next()
        return True

    def take(self) -> dict[K, E]:
        """What is left of the fold, for a whole fold that writes it now: the slices end
        (their file goes with that fold's)."""
        held, self.held = self.held, {}
        self._stop()
        return held

    def drop(self) -> None:
        """A write was undone: the book holds the fold's entries again, from its file."""
        self.held = {}
        self._stop()

    def step(self) -> None:
        """Write the next slice (the scheduled callback): one statement of `size` rows."""
        self._handle = None
        if self._done is None:
            return
        keys = list(islice(self.held, self.size))
        chunk = [self.held.pop(key) for key in keys]
        started = time.thread_time()
        try:
            self._write(chunk)
        except Exception as exc:
            self._failed(dict(zip(keys, chunk, strict=True)), exc)
            return
        self._fit(len(chunk), time.thread_time() - started)
        self.slices += 1
        if self._done is None:  # a whole fold took the rest meanwhile
            return
        if self.held:
            self._next()
            return
        done, self._done = self._done, None
        done()

    def _fit(self, rows: int, spent: float) -> None:
        """Size the next slice to take `SLICE_S`, as this one's rows took (a statement
        of many rows costs less a row than several of few)."""
        if self._fixed or spent <= 0:
            return
        allowed = ALONE_SLICE_S if self.alone else SLICE_S
        self.size = max(1, min(MAX_ROWS, int(allowed * rows / spent)))

    def _failed(self, chunk: dict[K, E], exc: Exception) -> None:
        if self._done is None:
            # The write was undone, and the book holds the fold's entries again (`drop`).
            log.warning("a slice of a fold was not written: %s", exc)
            return
        # Not undone by the book: they stay held, for the next whole fold to write.
        log.error("a slice of a fold failed: %r", exc, exc_info=exc)
        self.held = {**chunk, **self.held}

    def _next(self) -> None:
        schedule = self._scheduler()
        if schedule is None:  # the loop is gone: the next whole fold (or close) takes them
            return
        handle = schedule(self.step)
        self._handle = handle if isinstance(handle, asyncio.Handle) else None

    def _stop(self) -> None:
        self._done = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _scheduler(self) -> Callable[[Callable[[], None]], object] | None:
        if self.schedule is not None:
            return self.schedule
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return lambda step: loop.call_later(self.gap(), step)
