"""The report's ratios put Cocoon beside every other target of the run, a peer too."""

from __future__ import annotations

from cocoon.bench.report import compute_ratios

from .loads import load_result


def test_cocoon_is_compared_with_direct_and_with_a_peer_endpoint() -> None:
    results = [
        load_result("direct", "plain", 10_000.0),
        load_result("cocoon", "plain", 900.0),
        load_result("cocoon", "stream", 400.0),
        load_result("ref", "plain", 1_000.0),
        load_result("ref", "stream", 500.0),
    ]
    ratios = {(r.versus, r.mode): r.ratio for r in compute_ratios(results)}
    assert ratios == {("direct", "plain"): 0.09, ("ref", "plain"): 0.9, ("ref", "stream"): 0.8}
