"""What a benchmark run measures: loads, their bounds, and the request sent.

Plain msgspec structs, so the plan travels to the load generator process as
JSON and comes back inside the report unchanged.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Mode = Literal["plain", "stream"]

FULL_CONCURRENCY = (1, 16, 64, 256)
QUICK_CONCURRENCY = (1, 16)


class Load(msgspec.Struct, frozen=True, kw_only=True):
    """One measured load: a mode at a concurrency, bounded by count and by time."""

    # "plain": non-streamed requests; "stream": server-sent events.
    mode: Mode
    # Requests kept in flight at once (a closed loop: each finished request
    # is replaced by the next).
    concurrency: int
    # The measurement ends after this many completed requests...
    max_requests: int
    # ...or after this many seconds, whichever comes first.
    max_seconds: float
    # Requests run before measuring, so that connections, caches and JITs
    # are warm; their numbers are discarded.
    warmup_seconds: float

    @property
    def name(self) -> str:
        return f"{self.mode} c={self.concurrency}"


class RequestShape(msgspec.Struct, frozen=True, kw_only=True):
    """The one request every load sends, to every target."""

    model: str = "synthetic-small"
    # Completion tokens asked for; the upstream is set up so that every
    # answer has exactly this many.
    max_tokens: int = 64
    prompt: str = "Tell me about the sea, the wind and the boats."
    # Sent when set. A real model at temperature 0 gives every target the
    # same (greedy) answer, so they do the same work.
    temperature: float | None = None


class TargetSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Where the load generator sends requests, and which processes serve them."""

    name: str
    base_url: str
    # Process name → pid, sampled for CPU time and memory during each load.
    processes: dict[str, int]
    # Sent as the bearer token.
    api_key: str = "bench"
    # Sent with every request (a trust tier: x-cocoon-tier).
    headers: dict[str, str] = {}


class LoadgenJob(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one load generator process needs: one target, all its loads."""

    target: TargetSpec
    loads: list[Load]
    request: RequestShape
    # CPUs the load generator pins itself to (empty: no pinning).
    cpus: list[int] = []
    # Per-request limit; a request past it counts as an error.
    request_timeout_s: float = 60.0


def make_loads(
    *,
    quick: bool,
    concurrency: tuple[int, ...] | None = None,
    max_seconds: float | None = None,
    max_requests: int | None = None,
    modes: tuple[Mode, ...] = ("plain", "stream"),
) -> list[Load]:
    """The loads of a run: every mode at every concurrency level."""
    levels = concurrency or (QUICK_CONCURRENCY if quick else FULL_CONCURRENCY)
    seconds = max_seconds if max_seconds is not None else (1.5 if quick else 8.0)
    count = max_requests if max_requests is not None else (5_000 if quick else 50_000)
    # Warm-up: long enough to open every connection and fill the pipeline,
    # short next to the measurement.
    warmup = min(1.0, max(0.2, seconds / 5))
    return [
        Load(
            mode=mode,
            concurrency=level,
            max_requests=count,
            max_seconds=seconds,
            warmup_seconds=warmup,
        )
        for mode in modes
        for level in levels
    ]
