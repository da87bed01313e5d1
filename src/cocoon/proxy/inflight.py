"""Idempotent requests: one run per request id, answers replayable to retries.

A client that lost its connection retries with the same request id and the
same sealed envelope. The proxy must neither run nor bill it twice: a retry
of a request still running follows the running one; a retry of a finished
one gets the stored sealed frames again (they are ciphertext under the
client's response key, so storing them reveals nothing). A different
envelope under a used id is refused.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from ..wire.messages import AnswerEnd, AnswerPart, Error

Frame = AnswerPart | AnswerEnd | Error


class Entry:
    """One request's run: its frames so far and whether it has ended."""

    __slots__ = ("_changed", "done", "envelope_hash", "frames", "size")

    def __init__(self, envelope_hash: bytes) -> None:
        self.envelope_hash = envelope_hash
        self.frames: list[Frame] = []
        self.size = 0
        self.done = False
        self._changed: asyncio.Event | None = None

    def append(self, frame: Frame) -> None:
        self.frames.append(frame)
        if not isinstance(frame, Error):
            self.size += len(frame.sealed)
        if isinstance(frame, AnswerEnd | Error):
            self.done = True
        if self._changed is not None:
            self._changed.set()

    async def follow(self, seen: int) -> None:
        """Wait until there are more than `seen` frames."""
        while len(self.frames) <= seen:
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            await self._changed.wait()


class InflightRegistry:
    """Entries of running requests and of recently finished ones, bounded in bytes."""

    def __init__(self, max_finished: int = 1024, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_finished = max_finished
        self.max_bytes = max_bytes
        self._running: dict[str, Entry] = {}
        self._finished: OrderedDict[str, Entry] = OrderedDict()
        self._finished_bytes = 0

    def get(self, request_id: str) -> Entry | None:
        return self._running.get(request_id) or self._finished.get(request_id)

    def start(self, request_id: str, envelope_hash: bytes) -> Entry:
        entry = Entry(envelope_hash)
        self._running[request_id] = entry
        return entry

    def finish(self, request_id: str) -> None:
        """Move a run to the finished set; failed runs are forgotten so a retry runs again."""
        entry = self._running.pop(request_id, None)
        if entry is None:
            return
        if not entry.done:
            entry.append(Error(request_id, "cancelled", "the request was cancelled", True))
        last = entry.frames[-1]
        if isinstance(last, Error) and last.retryable:
            return
        self._finished[request_id] = entry
        self._finished_bytes += entry.size
        while self._finished and (
            len(self._finished) > self.max_finished or self._finished_bytes > self.max_bytes
        ):
            _, old = self._finished.popitem(last=False)
            self._finished_bytes -= old.size

    @property
    def running(self) -> int:
        return len(self._running)
