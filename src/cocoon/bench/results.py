"""What a load run reports: latency percentiles, the processes' usage, the whole
result, and the progress lines a job writes for the runner to read."""

from __future__ import annotations

import msgspec

from .plan import Load


class Percentiles(msgspec.Struct, frozen=True):
    """Summary of a set of durations, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    count: int


class ProcessUsage(msgspec.Struct, frozen=True):
    """What one server process (with its descendants) used during a load's window."""

    cpu_s: float
    cpu_s_per_1k_requests: float | None
    peak_rss_mb: float
    # The process's own high-water mark since it started (VmHWM).
    lifetime_peak_rss_mb: float


class LoadResult(msgspec.Struct, frozen=True, kw_only=True):
    """The numbers of one load against one target."""

    target: str
    load: Load
    duration_s: float
    requests: int
    errors: int
    error_examples: list[str]
    requests_per_s: float
    tokens: int
    tokens_per_s: float
    latency_ms: Percentiles | None
    ttft_ms: Percentiles | None
    gap_ms: Percentiles | None
    processes: dict[str, ProcessUsage]
    loadgen_cpu_s: float
    # Streamed: the share of answers (of more than one token) that arrived in
    # one network read, i.e. were not streamed as they were made.
    whole_answers: float | None = None
    # Which of the run's rounds (`--rounds`) measured it, from 0.
    round: int = 0


class Progress(msgspec.Struct, frozen=True, tag="progress"):
    """A load is running: how far it is."""

    index: int
    phase: str
    done: int
    errors: int
    elapsed_s: float


class Finished(msgspec.Struct, frozen=True, tag="result"):
    """A load is done."""

    index: int
    result: LoadResult


Line = Progress | Finished


def percentiles(values: list[float]) -> Percentiles | None:
    """p50/p90/p99 (nearest rank) and mean of `values` in seconds, as milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1

    def rank(q: float) -> float:
        return ordered[min(last, round(q * last))] * 1000

    return Percentiles(
        p50=rank(0.5),
        p90=rank(0.9),
        p99=rank(0.99),
        mean=sum(ordered) / len(ordered) * 1000,
        count=len(ordered),
    )


line_decoder: msgspec.json.Decoder[Line] = msgspec.json.Decoder(Line)
