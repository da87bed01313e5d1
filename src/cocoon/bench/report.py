"""The report of a run: JSON (everything), a Markdown table, a PNG plot, ratios and goals.

The goals are the issue's targets for the full Cocoon path; they are
checked here only as far as the run measured them (a quick run has no
concurrency 64), and the report says which were not measured.
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable
from pathlib import Path

import msgspec

from .results import LoadResult, Percentiles

COCOON = "cocoon"
# Cocoon without payments, beside `cocoon` with them.
UNPAID = "cocoon-unpaid"
# A streamed load is called not streamed when this share of its answers came whole.
WHOLE_NOTE_SHARE = 0.5


class Ratio(msgspec.Struct, frozen=True):
    """Cocoon's number over another target's, for one metric at one load."""

    metric: str
    mode: str
    concurrency: int
    versus: str
    cocoon: float
    other: float
    ratio: float | None
    # The round (`--rounds`) both were measured in, from 0.
    round: int = 0


class Goal(msgspec.Struct, frozen=True):
    """One of the issue's targets, and whether this run met it (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


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


def _find(
    results: list[LoadResult], target: str, mode: str, concurrency: int, round: int = 0
) -> LoadResult | None:
    for result in results:
        if (
            result.target == target
            and result.load.mode == mode
            and result.load.concurrency == concurrency
            and result.round == round
        ):
            return result
    return None


def rounds(results: list[LoadResult]) -> int:
    """How many rounds measured `results`."""
    return max((r.round for r in results), default=0) + 1


# A load with more failed requests than this share measured a target that was failing
# (the reference's client has died mid-run): no ratio is taken from it.
FAILED_SHARE = 0.01


def failed(result: LoadResult) -> bool:
    """Whether `result` measured a failing target rather than a serving one."""
    return result.errors > FAILED_SHARE * (result.requests + result.errors)


def metric(mode: str) -> tuple[str, Callable[[LoadResult], float]]:
    """The rate a load of `mode` is compared by: its name, and how to read it."""
    if mode == "plain":
        return "requests/s", lambda r: r.requests_per_s
    return "tokens/s", lambda r: r.tokens_per_s


def compute_ratios(results: list[LoadResult]) -> list[Ratio]:
    """Cocoon over every other target measured (direct, LiteLLM, the --target
    endpoints): throughput at every load, in each round (both sides from one)."""
    ratios: list[Ratio] = []
    others = [t for t in dict.fromkeys(r.target for r in results) if t != COCOON]
    for ours in (r for r in results if r.target == COCOON):
        mode, level = ours.load.mode, ours.load.concurrency
        name, value = metric(mode)
        for versus in others:
            theirs = _find(results, versus, mode, level, ours.round)
            if theirs is None:
                continue
            other = value(theirs)
            broken = failed(ours) or failed(theirs)
            ratios.append(
                Ratio(
                    name,
                    mode,
                    level,
                    versus,
                    round(value(ours), 1),
                    round(other, 1),
                    round(value(ours) / other, 3) if other and not broken else None,
                    ours.round,
                )
            )
    return ratios


def median_ratios(ratios: list[Ratio]) -> list[tuple[Ratio, list[float]]]:
    """Per metric, load and other target: the median over the rounds (its `cocoon` and
    `other` the medians of each side's rate), and each round's ratio."""
    groups: dict[tuple[str, str, int, str], list[Ratio]] = {}
    for r in ratios:
        groups.setdefault((r.metric, r.mode, r.concurrency, r.versus), []).append(r)
    medians = []
    for (name, mode, level, versus), group in groups.items():
        each = [r.ratio for r in group if r.ratio is not None]
        # The rates of the rounds that gave a ratio (not those of a failing target).
        group = [r for r in group if r.ratio is not None] or group
        median = Ratio(
            name,
            mode,
            level,
            versus,
            statistics.median(r.cocoon for r in group),
            statistics.median(r.other for r in group),
            round(statistics.median(each), 3) if each else None,
        )
        medians.append((median, each))
    return medians


def _added(ours: Percentiles | None, theirs: Percentiles | None) -> tuple[float, float] | None:
    if ours is None or theirs is None:
        return None
    return ours.p50 - theirs.p50, ours.p99 - theirs.p99


def _throughput_goal(
    results: list[LoadResult], mode: str, level: int, versus: str, factor: float
) -> Goal:
    name, value = metric(mode)
    what = f"{'streamed' if mode == 'stream' else 'non-streamed'} {name} at c={level}"
    bound = f"{factor:g}x {versus}" if factor >= 1 else f"{factor:.0%} of {versus}"
    goal = f"{what}: Cocoon ≥ {bound}"
    pairs = [
        (value(ours), value(theirs))
        for number in range(rounds(results))
        if (ours := _find(results, COCOON, mode, level, number)) is not None
        if (theirs := _find(results, versus, mode, level, number)) is not None
        if value(theirs) and not failed(ours) and not failed(theirs)
    ]
    if not pairs:
        return Goal(goal, "not measured", None)
    ratio = statistics.median(a / b for a, b in pairs)
    shown = f"{ratio:.2f}x" if factor >= 1 else f"{ratio:.1%}"
    ours_rate = statistics.median(a for a, _ in pairs)
    theirs_rate = statistics.median(b for _, b in pairs)
    of = f", the median of {len(pairs)} rounds" if len(pairs) > 1 else ""
    return Goal(goal, f"{shown} ({ours_rate:,.0f} vs {theirs_rate:,.0f}{of})", ratio >= factor)


def _tail_goal(results: list[LoadResult], versus: str, bound_ms: float) -> Goal:
    """Cocoon's c=1 non-streamed p99 against `versus`'s, the median over rounds."""
    goal = f"non-streamed p99 at c=1: Cocoon ≤ {versus}'s + {bound_ms:g} ms (issue 18)"
    added = [
        ours.latency_ms.p99 - theirs.latency_ms.p99
        for number in range(rounds(results))
        if (ours := _find(results, COCOON, "plain", 1, number)) is not None
        if (theirs := _find(results, versus, "plain", 1, number)) is not None
        if ours.latency_ms is not None and theirs.latency_ms is not None
    ]
    if not added:
        return Goal(goal, "not measured", None)
    median = statistics.median(added)
    each = f" (each round: {', '.join(f'{x:+.2f}' for x in added)})" if len(added) > 1 else ""
    return Goal(goal, f"{median:+.2f} ms{each}", median <= bound_ms)


def compute_goals(results: list[LoadResult]) -> list[Goal]:
    """The issues' targets, measured where this run allows (those of issue 18, payments
    against none, only where `cocoon-unpaid` ran beside `cocoon`)."""
    goals = [
        _throughput_goal(results, "plain", 64, "litellm", 10),
        _throughput_goal(results, "plain", 64, "direct", 0.2),
        _throughput_goal(results, "stream", 64, "litellm", 30),
        _throughput_goal(results, "stream", 64, "direct", 0.4),
    ]
    ours, direct = _find(results, COCOON, "stream", 1), _find(results, "direct", "stream", 1)
    added = _added(ours.ttft_ms if ours else None, direct.ttft_ms if direct else None)
    goal = "added time to first token vs direct at c=1: ≤ 2 ms p50, ≤ 5 ms p99"
    if added is None:
        goals.append(Goal(goal, "not measured", None))
    else:
        p50, p99 = added
        goals.append(Goal(goal, f"+{p50:.2f} ms p50, +{p99:.2f} ms p99", p50 <= 2 and p99 <= 5))
    top = _find(results, COCOON, "stream", 256)
    goal = "streamed tokens/s at c=256 ≥ 25,000"
    if top is None:
        goals.append(Goal(goal, "not measured", None))
    else:
        goals.append(Goal(goal, f"{top.tokens_per_s:,.0f}", top.tokens_per_s >= 25_000))
    low = _find(results, COCOON, "stream", 1)
    goal = "RSS per node grows < 50 MB from 1 to 256 streams"
    if low is None or top is None:
        goals.append(Goal(goal, "not measured", None))
    else:
        growth = {
            name: top.processes[name].peak_rss_mb - low.processes[name].peak_rss_mb
            for name in top.processes
            if name in low.processes and name != "upstream"
        }
        worst = max(growth.values(), default=0.0)
        text = ", ".join(f"{name} {mb:+.1f} MB" for name, mb in sorted(growth.items()))
        goals.append(Goal(goal, text or "no process readings", worst < 50 if growth else None))
    if any(r.target == UNPAID for r in results):
        paid = _throughput_goal(results, "plain", 64, UNPAID, 0.9)
        goals.append(msgspec.structs.replace(paid, goal=f"{paid.goal} (issue 18)"))
        goals.append(_tail_goal(results, UNPAID, 1.0))
    return goals


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
        tee = _find(results, COCOON, r.load.mode, r.load.concurrency, r.round)
        name, value = metric(r.load.mode)
        key = "latency_ms" if r.load.mode == "plain" else "ttft_ms"
        ratio = f"{value(r) / value(tee):.2f}x" if tee is not None and value(tee) else "-"
        ours = getattr(r, key)
        theirs = getattr(tee, key) if tee is not None else None
        lines.append(
            f"| {_label(r, many)[len(COCOON) + 1 :].replace(']', '', 1)} | {r.load.mode}"
            f" | {r.load.concurrency}"
            f" | {_rate(value(r))} {name} | {ratio}"
            f" | {_ms(ours, 'p50')} / {_ms(ours, 'p99')}"
            f" | {_ms(theirs, 'p50')} / {_ms(theirs, 'p99')} |"
        )
        rows += 1
    return "\n".join(lines) if rows else None


def goal_table(goals: list[Goal]) -> str:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    marks = {True: "yes", False: "**no**", None: "not measured"}
    for g in goals:
        lines.append(f"| {g.goal} | {g.measured} | {marks[g.met]} |")
    return "\n".join(lines)


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
