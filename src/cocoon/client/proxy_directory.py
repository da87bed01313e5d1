"""The workers that one proxy offers: asked for, pushed, verified and cached.

Each directory entry is verified here (quote, policy, the root's rules) before a
request may be sealed to it; what the proxy pushes replaces the cache at once,
so that a new worker gets traffic without waiting for it to expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..crypto.sealing import SealSessions
from ..wire.errors import ConnectionClosed, WireError
from ..wire.messages import DIRECTORY_PUSH, Directory, DirectoryRequest
from ..wire.transport import Channel
from .directory import VerifiedWorker, WorkerVerifier
from .errors import ClientError
from .root_view import RootView


class ProxyDirectory:
    """The verified workers of one proxy's directory, refreshed after `ttl_s`."""

    def __init__(
        self,
        verifier: WorkerVerifier,
        sealing: SealSessions,
        root_view: RootView | None,
        ttl_s: float,
        wait_s: float,
    ) -> None:
        self.verifier = verifier
        self.sealing = sealing
        self.root_view = root_view
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self._seq = 0
        self._waiters: dict[int, asyncio.Future[Directory]] = {}
        self.workers: list[VerifiedWorker] = []
        self._last: Directory | None = None
        self.fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def on_directory(self, message: Directory) -> None:
        """A directory from the proxy: pushed, or the answer to our request."""
        if message.seq == DIRECTORY_PUSH:
            # The proxy tells us when workers join or leave, so a new
            # worker gets traffic at once, not after the cache expires.
            await self._install(message)
            return
        waiter = self._waiters.pop(message.seq, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    def lost(self) -> None:
        """The proxy connection is gone: no asked-for directory will come."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionClosed("proxy connection lost"))
        self._waiters.clear()

    async def _install(self, directory: Directory) -> list[VerifiedWorker]:
        now = int(time.time())
        self._last = directory
        verified = []
        for entry in directory.workers:
            worker = self.verifier.verify(entry, now)
            if worker is not None and self.root_view is not None:
                worker = await self.root_view.judge(worker)
            if worker is not None:
                verified.append(worker)
        self.workers = verified
        self.fetched_at = time.monotonic()
        # Sessions of workers that left go with them.
        self.sealing.retain({w.key_id for w in self.workers})
        return self.workers

    async def reinstall(self) -> None:
        """The root changed: install the last directory again under the new rules."""
        if self._last is not None:
            await self._install(self._last)

    async def fetch(
        self, channel: Callable[[], Awaitable[Channel]], refresh: bool = False
    ) -> list[VerifiedWorker]:
        """Verified workers of every model, asked of the proxy once the cache is old."""
        if not refresh and time.monotonic() - self.fetched_at < self.ttl_s:
            return self.workers
        async with self._lock:
            if not refresh and time.monotonic() - self.fetched_at < self.ttl_s:
                return self.workers
            live = await channel()
            self._seq += 1
            seq = self._seq
            waiter: asyncio.Future[Directory] = asyncio.get_running_loop().create_future()
            self._waiters[seq] = waiter
            try:
                await live.send(DirectoryRequest(seq, ""))
                directory = await asyncio.wait_for(waiter, self.wait_s)
            except (WireError, TimeoutError) as exc:
                raise ClientError("proxy_unavailable", f"directory request failed: {exc}") from exc
            finally:
                self._waiters.pop(seq, None)
            return await self._install(directory)
