"""Several runs of `cocoon bench`, read together: each round's ratios, and their medians.

On a shared machine one run's ratio moves with the machine's phases, which
last tens of seconds: in round sixteen of issue 18 the same two builds came
out at 0.85 and 1.18 of each other a few minutes apart. Runs repeated and
read together say more: `cocoon bench compare results/*/report.json` gives,
for every load Cocoon and another target both ran, the ratio of their rates
in each run, its median, and the median CPU each spent a request.

CPU a request is the sum over every sampled server process (the model server
included: a peer's is found with it), the local chain left out: it stands in
for TON, which runs elsewhere.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import msgspec

from .ratios import PairKey, rate, served_pairs
from .report import Report
from .results import LoadResult

# Processes that do not serve the requests.
_NOT_SERVING = frozenset({"chain"})


class CompareError(Exception):
    """A report that cannot be read."""


@dataclass(frozen=True)
class Row:
    """One load Cocoon and `versus` both ran, over the runs that measured it."""

    mode: str
    concurrency: int
    versus: str
    ratios: list[float]
    cocoon_rates: list[float]
    other_rates: list[float]
    cocoon_cpu_ms: list[float]
    other_cpu_ms: list[float]

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)


def read_reports(paths: list[Path]) -> list[Report]:
    """The reports at `paths` (a report.json, or the folder holding one)."""
    reports = []
    for path in paths:
        file = path / "report.json" if path.is_dir() else path
        try:
            reports.append(msgspec.json.decode(file.read_bytes(), type=Report))
        except (OSError, msgspec.MsgspecError) as exc:
            raise CompareError(f"{file}: not a report of cocoon bench: {exc}") from exc
    return reports


def compare(reports: list[Report]) -> list[Row]:
    """For each load and other target, Cocoon against it in every report (and round)
    that has both."""
    cells: dict[PairKey, list[tuple[LoadResult, LoadResult]]] = {}
    for report in reports:
        # A run of several rounds (`--rounds`) is several runs: each round's pair.
        for key, pairs in served_pairs(report.results).items():
            cells.setdefault(key, []).extend(pairs)
    rows = []
    for (mode, level, versus), pairs in cells.items():
        rows.append(
            Row(
                mode=mode,
                concurrency=level,
                versus=versus,
                ratios=[rate(a) / rate(b) for a, b in pairs],
                cocoon_rates=[rate(a) for a, _ in pairs],
                other_rates=[rate(b) for _, b in pairs],
                cocoon_cpu_ms=[c for a, _ in pairs if (c := cpu_ms(a)) is not None],
                other_cpu_ms=[c for _, b in pairs if (c := cpu_ms(b)) is not None],
            )
        )
    return sorted(rows, key=lambda r: (r.versus, r.mode, r.concurrency))


def cpu_ms(result: LoadResult) -> float | None:
    """CPU milliseconds a request over the serving processes (None: none was sampled)."""
    per_1k = [
        usage.cpu_s_per_1k_requests
        for name, usage in result.processes.items()
        if name not in _NOT_SERVING and usage.cpu_s_per_1k_requests is not None
    ]
    return sum(per_1k) if per_1k else None


def table(rows: list[Row], runs: int) -> str:
    """The comparison as Markdown."""
    if not rows:
        return f"No load that Cocoon and another target both ran, in {runs} report(s)."
    lines = [
        f"Cocoon against each other target, {runs} report(s); rates are requests/s"
        " (non-streamed) or tokens/s (streamed).",
        "",
        "| versus | mode | c | runs | ratio each run | median ratio | Cocoon rate (median)"
        " | its rate (median) | Cocoon CPU ms/req (median) | its CPU ms/req (median) |",
        "|---|---|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.versus} | {row.mode} | {row.concurrency} | {len(row.ratios)}"
            f" | {', '.join(f'{r:.2f}' for r in row.ratios)} | **{row.median_ratio:.2f}**"
            f" | {statistics.median(row.cocoon_rates):,.0f}"
            f" | {statistics.median(row.other_rates):,.0f}"
            f" | {_median_ms(row.cocoon_cpu_ms)} | {_median_ms(row.other_cpu_ms)} |"
        )
    return "\n".join(lines)


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "-"
