"""A measured load's result, made up for the report's tests."""

from __future__ import annotations

from cocoon.bench.plan import Load
from cocoon.bench.results import LoadResult


def load_result(
    target: str,
    mode: str = "stream",
    rate: float = 10.0,
    whole: float | None = None,
    round: int = 0,
) -> LoadResult:
    """`target`'s result at c=64: `rate` requests/s of 64 tokens, `whole` as measured."""
    return LoadResult(
        target=target,
        load=Load(mode=mode, concurrency=64, max_seconds=1.0, max_requests=100, warmup_seconds=0),
        duration_s=1.0,
        requests=int(rate),
        errors=0,
        error_examples=[],
        requests_per_s=rate,
        tokens=int(rate) * 64,
        tokens_per_s=rate * 64,
        latency_ms=None,
        ttft_ms=None,
        gap_ms=None,
        processes={},
        loadgen_cpu_s=0.0,
        whole_answers=whole,
        round=round,
    )
