"""How a client picks among its connected proxies: at random, weighted by each one's
measured first-chunk latency and its open requests, so that the faster and less
loaded proxy takes most traffic and the others keep being measured."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Collection, Iterable

from .session import ProxySession

# Weight of the newest first-chunk latency in a proxy's moving average.
LATENCY_ALPHA = 0.2
# How long a request waits for any proxy to be connected.
CONNECT_WAIT_S = 10.0


def connected_sessions(
    sessions: Iterable[ProxySession], exclude: Collection[str] = ()
) -> list[ProxySession]:
    """The sessions whose proxy is connected now, but those in `exclude`."""
    return [
        s
        for s in sessions
        if s.channel is not None and not s.channel.closed and s.address not in exclude
    ]


async def pick(
    sessions: Collection[ProxySession], rng: random.Random, exclude: Collection[str] = ()
) -> ProxySession | None:
    """A connected proxy, weighted by latency and load; waits a bounded time for one."""
    deadline = time.monotonic() + CONNECT_WAIT_S
    while True:
        live = connected_sessions(sessions, exclude)
        if live:
            weights = [1.0 / cost(s) for s in live]
            return rng.choices(live, weights)[0]
        candidates = [s for s in sessions if s.address not in exclude]
        if not candidates or time.monotonic() > deadline:
            return None
        # Wait for one of them to connect (they dial on their own).
        waits = [asyncio.create_task(s.connected.wait()) for s in candidates]
        try:
            await asyncio.wait(
                waits,
                timeout=max(0.0, deadline - time.monotonic()),
                return_when="FIRST_COMPLETED",
            )
        finally:
            for w in waits:
                w.cancel()


def cost(session: ProxySession) -> float:
    """What sending through this proxy costs: its latency, times its load."""
    return (session.latency_ms + 1.0) * (1 + session.open_requests)


def observe(session: ProxySession, latency_ms: float) -> None:
    """Fold one first-chunk latency into the proxy's moving average."""
    if session.latency_ms == 0.0:
        session.latency_ms = latency_ms
    else:
        session.latency_ms += LATENCY_ALPHA * (latency_ms - session.latency_ms)
