"""Requests that carry one app-given id (`Idempotency-Key`, `X-Request-Id`), one at a time.

An app that retries before its first attempt has answered sends the same id
twice at once. Both would reach `ProxySession.seal` and `answer` together:
the duplicate check and the sealing are not one step, the proxy sees one
request id opened twice on one connection, and the first stream was lost
though its worker answered, the proxy billed it and the client paid for it
(issue 16, item 2). So the gateway lets one request per id run at a time:

- the first runs as usual (the *leader*);
- one that arrives while it runs waits for it (bounded by the leader's own
  request timeout), then
  - gets the leader's response itself, the very same bytes, when the leader
    answered whole (not streamed) and the two bodies are identical;
  - gets `409 duplicate_request_id` when the leader was cut (its app went
    away): the cut run's last frames may still be on their way over the proxy
    connection, and the same id opened again on it at once could not be told
    from them; the app retries when it wants (a moment later, as a retry);
  - otherwise runs after it, as a retry does: the same sealed envelope
    again, which the proxy answers from the run it stored, without running
    or billing it again (proxy/inflight.py); a different body under the same
    id is refused there as `409 duplicate_request_id`.

Nothing is kept once no request of an id is running: a later retry is the
proxy's to replay.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class WholeAnswer:
    """A response the leader sent whole: what a follower with the same body gets."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers=dict(self.headers))


@dataclass(frozen=True)
class Interrupted:
    """The leader was cut before it answered: a follower is refused (409)."""

    key: str


class Run:
    """One request of an id while it runs; `answer` is set if it answered whole,
    `cut` if it ended without answering."""

    __slots__ = ("answer", "cut", "digest", "finished")

    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        self.answer: WholeAnswer | None = None
        self.cut = False
        self.finished = asyncio.Event()


class OneAtATime:
    """The running request of each app-given id."""

    def __init__(self) -> None:
        self._running: dict[str, Run] = {}
        # Copies waiting for the request of their id to end (for stats and tests).
        self.waiting = 0

    def __len__(self) -> int:
        return len(self._running)

    async def begin(self, key: str, digest: bytes) -> Run | WholeAnswer | Interrupted:
        """Wait for `key`'s turn: a `Run` to lead (pass it to `end`), the whole answer
        of a leader that had the same body (`digest`), or `Interrupted`."""
        while (current := self._running.get(key)) is not None:
            self.waiting += 1
            try:
                await current.finished.wait()
            finally:
                self.waiting -= 1
            if current.answer is not None and current.digest == digest:
                return current.answer
            if current.cut:
                return Interrupted(key)
        run = Run(digest)
        self._running[key] = run
        return run

    def end(self, key: str, run: Run, response: web.StreamResponse | None) -> None:
        """The leader is done; `response` is what it answered (None: nothing, it was cut)."""
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            headers = tuple(
                (name, value)
                for name, value in response.headers.items()
                if name.lower() not in ("content-length", "date", "server")
            )
            run.answer = WholeAnswer(response.status, response.body, headers)
        elif response is None:
            run.cut = True
        if self._running.get(key) is run:
            del self._running[key]
        run.finished.set()
