"""The report of a run: JSON (everything), Markdown tables and a PNG plot, with the
ratios (`ratios.py`) and the goals (`goals.py`) worked out from the results."""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable
from pathlib import Path

import msgspec

from .goals import Goal, compute_goals, goal_table
from .ratios import COCOON, Ratio, compute_ratios, find, median_ratios, metric, rounds
from .results import LoadResult, Percentiles

# A streamed load is called not streamed when this share of its answers came whole.
WHOLE_NOTE_SHARE = 0.5


class Report(msgspec.Struct, kw_only=True):
    """Everything a run measured, as written to report.json."""

    created: str
    command: str
    machine: dict[str, object]
    pinning: str
    settings: dict[str, object]
    notes: list[str]
    results: list[LoadResult]
    ratios: list[Ratio] = []
    goals: list[Goal] = []


# --- Markdown ------------------------------------------------------------------


def _ms(p: Percentiles | None, field: str) -> str:
    if p is None:
        return "-"
    value: float = getattr(p, field)
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _label(result: LoadResult, many: bool) -> str:
    """The target's name, with its round when the run had several."""
    return f"{result.target} #{result.round + 1}" if many else result.target


def results_table(results: list[LoadResult]) -> str:
    """One row per target and load (and round): throughput, latency percentiles, errors."""
    many = rounds(results) > 1
    lines = [
        "| target | mode | c | req/s | tokens/s | latency p50 / p99 ms"
        " | TTFT p50 / p99 ms | token gap p50 / p99 ms | arrived whole | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {_label(r, many)} | {r.load.mode} | {r.load.concurrency}"
            f" | {_rate(r.requests_per_s)}"
            f" | {_rate(r.tokens_per_s)}"
            f" | {_ms(r.latency_ms, 'p50')} / {_ms(r.latency_ms, 'p99')}"
            f" | {_ms(r.ttft_ms, 'p50')} / {_ms(r.ttft_ms, 'p99')}"
            f" | {_ms(r.gap_ms, 'p50')} / {_ms(r.gap_ms, 'p99')}"
            f" | {_share(r.whole_answers)} | {r.errors} |"
        )
    return "\n".join(lines)


def whole_answer_notes(results: list[LoadResult], token_delay_ms: float) -> list[str]:
    """A note for each streamed load whose answers mostly came in one piece although
    the upstream made their tokens `token_delay_ms` apart: such a target held each
    answer until its end, and its streamed numbers are those of whole answers (no
    first token before the last), not of a stream. With a zero-delay upstream a
    fast stream can arrive in one read too (the reader wakes after the last
    write), so no note is made."""
    if token_delay_ms <= 0:
        return []
    return [
        f"{r.target}, streamed at c={r.load.concurrency}: {r.whole_answers:.0%} of answers"
        f" arrived whole although their tokens were made {token_delay_ms:g} ms apart,"
        " the first token with the last; it did not stream them"
        for r in results
        if r.whole_answers is not None and r.whole_answers >= WHOLE_NOTE_SHARE
    ]


def process_table(results: list[LoadResult]) -> str:
    """CPU seconds per 1,000 requests and peak RSS, per server process and load."""
    many = rounds(results) > 1
    lines = [
        "| target | mode | c | process | CPU s / 1k req | peak RSS MB |",
        "|---|---|--:|---|--:|--:|",
    ]
    for r in results:
        for name, usage in r.processes.items():
            per_1k = usage.cpu_s_per_1k_requests
            lines.append(
                f"| {_label(r, many)} | {r.load.mode} | {r.load.concurrency} | {name}"
                f" | {'-' if per_1k is None else f'{per_1k:.2f}'} | {usage.peak_rss_mb:.1f} |"
            )
        lines.append(
            f"| {_label(r, many)} | {r.load.mode} | {r.load.concurrency} | (load generator)"
            f" | {r.loadgen_cpu_s / r.requests * 1000 if r.requests else 0:.2f} | - |"
        )
    return "\n".join(lines)


def ratio_table(ratios: list[Ratio]) -> str:
    """Each ratio; with several rounds, each load's median over them and every round's."""
    many = any(r.round for r in ratios)
    if not many:
        rows = [(r, "") for r in ratios]
        lines = ["| metric | mode | c | Cocoon | versus | theirs | Cocoon / theirs |"]
        lines.append("|---|---|--:|--:|---|--:|--:|")
    else:
        rows = [
            (r, " | " + ", ".join(f"{x:.2f}" for x in each)) for r, each in median_ratios(ratios)
        ]
        lines = [
            "Medians over the rounds (each side's rate, and the ratio of the two in each round).",
            "",
            "| metric | mode | c | Cocoon | versus | theirs | Cocoon / theirs | each round |",
            "|---|---|--:|--:|---|--:|--:|---|",
        ]
    for r, each in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(
            f"| {r.metric} | {r.mode} | {r.concurrency} | {_rate(r.cocoon)} | {r.versus}"
            f" | {_rate(r.other)} | {ratio}{each} |"
        )
    return "\n".join(lines)


def tier_table(results: list[LoadResult]) -> str | None:
    """What each trust tier costs against Cocoon's default (tee), load by load; None when
    no tier was measured."""
    lines = [
        "| tier | mode | c | throughput | vs tee | latency or TTFT p50 / p99 ms | tee's |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    rows = 0
    many = rounds(results) > 1
    for r in results:
        if not (r.target.startswith(f"{COCOON}[") and r.target.endswith("]")):
            continue
        tee = find(results, COCOON, r.load.mode, r.load.concurrency, r.round)
        name, value = metric(r.load.mode)
        key = "latency_ms" if r.load.mode == "plain" else "ttft_ms"
        ratio = f"{value(r) / value(tee):.2f}x" if tee is not None and value(tee) else "-"
        ours = getattr(r, key)
        theirs = getattr(tee, key) if tee is not None else None
        lines.append(
            f"| {r.target[len(COCOON) + 1 : -1]}{f' #{r.round + 1}' if many else ''}"
            f" | {r.load.mode} | {r.load.concurrency}"
            f" | {_rate(value(r))} {name} | {ratio}"
            f" | {_ms(ours, 'p50')} / {_ms(ours, 'p99')}"
            f" | {_ms(theirs, 'p50')} / {_ms(theirs, 'p99')} |"
        )
        rows += 1
    return "\n".join(lines) if rows else None


def markdown(report: Report) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items())
    parts = [
        f"# cocoon bench — {report.created}",
        "",
        f"Command: `{report.command}`",
        "",
        f"Machine: {report.machine.get('cpus')} CPUs, Python {report.machine.get('python')},"
        f" {report.machine.get('platform')}. Pinning: {report.pinning}.",
        "",
        f"Settings: {settings}.",
        "",
        *(f"- {note}" for note in report.notes),
        "",
        "## Results",
        "",
        results_table(report.results),
        "",
        "## Ratios",
        "",
        ratio_table(report.ratios) if report.ratios else "No ratios: Cocoon was not measured.",
        "",
        *(
            ["## Trust tiers", "", table, ""]
            if (table := tier_table(report.results)) is not None
            else []
        ),
        "## Goals",
        "",
        goal_table(report.goals),
        "",
        "## Processes",
        "",
        process_table(report.results),
        "",
    ]
    return "\n".join(parts)


# --- plot ------------------------------------------------------------------------


def _p50(p: Percentiles | None) -> float | None:
    return None if p is None else p.p50


def plot(results: list[LoadResult], path: Path) -> str | None:
    """Throughput and latency against concurrency per target; a note if matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return "no plot: matplotlib is not installed (pip install -e '.[bench]')"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, str, Callable[[LoadResult], float | None]]] = [
        ("plain", "non-streamed requests/s", lambda r: r.requests_per_s),
        ("stream", "streamed tokens/s", lambda r: r.tokens_per_s),
        ("plain", "non-streamed latency p50 (ms)", lambda r: _p50(r.latency_ms)),
        ("stream", "time to first token p50 (ms)", lambda r: _p50(r.ttft_ms)),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    targets = list(dict.fromkeys(r.target for r in results))
    for axis, (mode, title, value) in zip(axes.flat, panels, strict=True):
        axis.set_title(title)
        plotted = False
        for target in targets:
            by_level: dict[int, list[float]] = {}
            for r in results:
                y = value(r) if r.target == target and r.load.mode == mode else None
                if y is not None and y > 0:
                    by_level.setdefault(r.load.concurrency, []).append(y)
            # Several rounds: each level's median.
            points = sorted((x, statistics.median(ys)) for x, ys in by_level.items())
            if points:
                axis.plot([x for x, _ in points], [y for _, y in points], marker="o", label=target)
                plotted = True
        if not plotted:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center")
            continue
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrency")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle("cocoon bench: direct upstream, full Cocoon path, LiteLLM")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None


def _rate(value: float) -> str:
    """A rate for the tables: whole numbers, but for the small ones a real model makes."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def write(report: Report, out: Path) -> list[str]:
    """Write report.json, report.md and report.png into `out`; return notes (e.g. no plot)."""
    out.mkdir(parents=True, exist_ok=True)
    report.ratios = compute_ratios(report.results)
    report.goals = compute_goals(report.results)
    notes = []
    note = plot(report.results, out / "report.png")
    if note is not None:
        notes.append(note)
        report.notes.append(note)
    (out / "report.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    (out / "report.md").write_text(markdown(report))
    return notes
