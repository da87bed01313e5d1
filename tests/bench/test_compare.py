"""`cocoon bench compare`: several reports read together, each run's ratio and the medians."""

from __future__ import annotations

from pathlib import Path

import msgspec
from typer.testing import CliRunner

from cocoon.bench.compare import compare, cpu_ms, read_reports, table
from cocoon.bench.plan import Load
from cocoon.bench.report import Report
from cocoon.bench.results import LoadResult, ProcessUsage
from cocoon.cli import app


def result(target: str, mode: str, rate: float, cpu: dict[str, float]) -> LoadResult:
    return LoadResult(
        target=target,
        load=Load(mode=mode, concurrency=64, max_requests=1000, max_seconds=5, warmup_seconds=1),
        duration_s=5.0,
        requests=int(rate * 5),
        errors=0,
        error_examples=[],
        requests_per_s=rate,
        tokens=int(rate * 5 * 64),
        tokens_per_s=rate * 64,
        latency_ms=None,
        ttft_ms=None,
        gap_ms=None,
        processes={
            name: ProcessUsage(
                cpu_s=ms * rate * 5 / 1000,
                cpu_s_per_1k_requests=ms,
                peak_rss_mb=50,
                lifetime_peak_rss_mb=50,
            )
            for name, ms in cpu.items()
        },
        loadgen_cpu_s=0.5,
    )


def report(*results: LoadResult) -> Report:
    return Report(
        created="now",
        command="cocoon bench",
        machine={},
        pinning="",
        settings={},
        notes=[],
        results=list(results),
    )


def run(cocoon: float, ref: float, mode: str = "plain") -> Report:
    return report(
        result("cocoon", mode, cocoon, {"client": 0.4, "proxy1": 0.3, "chain": 0.05}),
        result("ref", mode, ref, {"client-runner": 0.5, "cocoon": 0.2}),
    )


def test_each_run_s_ratio_and_their_median() -> None:
    rows = compare([run(1000, 800), run(900, 1000), run(1100, 1000)])
    assert len(rows) == 1
    row = rows[0]
    assert (row.versus, row.mode, row.concurrency) == ("ref", "plain", 64)
    assert [round(r, 2) for r in row.ratios] == [1.25, 0.9, 1.1]
    assert round(row.median_ratio, 2) == 1.1
    # The chain stands in for TON: not a server of the requests.
    assert row.cocoon_cpu_ms == [0.7, 0.7, 0.7]
    assert row.other_cpu_ms == [0.7, 0.7, 0.7]
    assert "| ref | plain | 64 | 3 | 1.25, 0.90, 1.10 | **1.10** |" in table(rows, 3)


def test_streamed_loads_compare_tokens_and_a_target_that_failed_is_left_out() -> None:
    streamed = compare([run(400, 500, "stream"), run(400, 0, "stream")])
    assert [round(r, 2) for r in streamed[0].ratios] == [0.8]


def test_cpu_is_none_where_no_process_was_sampled() -> None:
    assert cpu_ms(result("ref", "plain", 100, {})) is None
    assert "No load" in table(compare([report(result("cocoon", "plain", 10, {}))]), 1)


def test_the_command_reads_folders_and_files_and_refuses_what_is_not_a_report(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_bytes(msgspec.json.encode(run(1000, 800)))
    (tmp_path / "b.json").write_bytes(msgspec.json.encode(run(900, 1000)))
    assert len(read_reports([tmp_path / "a", tmp_path / "b.json"])) == 2
    runner = CliRunner()
    ok = runner.invoke(app, ["bench", "compare", str(tmp_path / "a"), str(tmp_path / "b.json")])
    assert ok.exit_code == 0, ok.output
    assert "**1.07**" in ok.output  # the median of 1.25 and 0.90
    (tmp_path / "bad.json").write_text("{}")
    bad = runner.invoke(app, ["bench", "compare", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1
    assert "not a report of cocoon bench" in bad.output


def test_the_rounds_of_one_run_are_runs_of_their_own() -> None:
    rounds = [
        msgspec.structs.replace(r, round=number)
        for number, (cocoon, ref) in enumerate([(1000, 800), (500, 1000)])
        for r in run(cocoon, ref).results
    ]
    [row] = compare([report(*rounds), run(1100, 1000)])
    assert [round(r, 2) for r in row.ratios] == [1.25, 0.5, 1.1]


def test_a_run_where_the_other_target_was_failing_is_left_out() -> None:
    failing = run(1000, 40)
    failing.results[1] = msgspec.structs.replace(failing.results[1], errors=30_000)
    [row] = compare([failing, run(1100, 1000)])
    assert [round(r, 2) for r in row.ratios] == [1.1]
