"""The report's ratios put Cocoon beside every other target of the run, a peer too."""

from __future__ import annotations

import msgspec

from cocoon.bench.report import compute_ratios, median_ratios, ratio_table, results_table

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


def test_with_rounds_each_ratio_is_taken_within_its_round_and_the_median_is_shown() -> None:
    # Round 1 ran slower for both: across rounds the ratio would be 2.0 or 0.5.
    results = [
        load_result("cocoon", "plain", 1_000.0, round=0),
        load_result("ref", "plain", 900.0, round=0),
        load_result("ref", "plain", 450.0, round=1),
        load_result("cocoon", "plain", 500.0, round=1),
        load_result("cocoon", "plain", 800.0, round=2),
        load_result("ref", "plain", 1_000.0, round=2),
    ]
    ratios = compute_ratios(results)
    assert [(r.round, r.ratio) for r in ratios] == [(0, 1.111), (1, 1.111), (2, 0.8)]
    [(median, each)] = median_ratios(ratios)
    assert (median.ratio, median.cocoon, median.other) == (1.111, 800.0, 900.0)
    assert each == [1.111, 1.111, 0.8]
    table = ratio_table(ratios)
    assert "| requests/s | plain | 64 | 800 | ref | 900 | 1.11x | 1.11, 1.11, 0.80 |" in table
    assert "cocoon #2" in results_table(results) and "ref #3" in results_table(results)


def test_a_single_round_reads_as_before() -> None:
    results = [load_result("cocoon", "plain", 900.0), load_result("ref", "plain", 1_000.0)]
    table = ratio_table(compute_ratios(results))
    assert "each round" not in table and "| 0.90x |" in table
    assert "#1" not in results_table(results)


def test_a_round_where_a_target_failed_gives_no_ratio() -> None:
    dead = msgspec.structs.replace(load_result("ref", "plain", 40.0, round=1), errors=30_000)
    results = [
        load_result("cocoon", "plain", 1_000.0, round=0),
        load_result("ref", "plain", 900.0, round=0),
        dead,
        load_result("cocoon", "plain", 800.0, round=1),
    ]
    ratios = compute_ratios(results)
    assert [(r.round, r.ratio) for r in ratios] == [(0, 1.111), (1, None)]
    [(median, each)] = median_ratios(ratios)
    assert (median.ratio, median.cocoon, median.other, each) == (1.111, 1_000.0, 900.0, [1.111])
