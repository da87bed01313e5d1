"""The report's ratios put Cocoon beside every other target of the run, a peer too."""

from __future__ import annotations

from cocoon.bench.plan import Load
from cocoon.bench.report import compute_ratios
from cocoon.bench.results import LoadResult


def _result(target: str, mode: str, rate: float) -> LoadResult:
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
    )


def test_cocoon_is_compared_with_direct_and_with_a_peer_endpoint() -> None:
    results = [
        _result("direct", "plain", 10_000.0),
        _result("cocoon", "plain", 900.0),
        _result("cocoon", "stream", 400.0),
        _result("ref", "plain", 1_000.0),
        _result("ref", "stream", 500.0),
    ]
    ratios = {(r.versus, r.mode): r.ratio for r in compute_ratios(results)}
    assert ratios == {("direct", "plain"): 0.09, ("ref", "plain"): 0.9, ("ref", "stream"): 0.8}
