"""The issues' targets for the full Cocoon path, checked as far as a run measured them.

A quick run has no concurrency 64, so the report says which goals were not
measured; issue 18's goals (payments against none) are set only where the
`cocoon-unpaid` target ran beside `cocoon`.
"""

from __future__ import annotations

import statistics

import msgspec

from .ratios import COCOON, UNPAID, find, metric, served_pairs
from .results import LoadResult, Percentiles


class Goal(msgspec.Struct, frozen=True):
    """One of the issue's targets, and whether this run met it (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


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
        for ours, theirs in served_pairs(results).get((mode, level, versus), [])
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
    """Cocoon's c=1 non-streamed p99 against `versus`'s, the median over the rounds in
    which both served (as the throughput goals: a failing side's tail says nothing)."""
    goal = f"non-streamed p99 at c=1: Cocoon ≤ {versus}'s + {bound_ms:g} ms (issue 18)"
    added = [
        ours.latency_ms.p99 - theirs.latency_ms.p99
        for ours, theirs in served_pairs(results).get(("plain", 1, versus), [])
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
    ours, direct = find(results, COCOON, "stream", 1), find(results, "direct", "stream", 1)
    added = _added(ours.ttft_ms if ours else None, direct.ttft_ms if direct else None)
    goal = "added time to first token vs direct at c=1: ≤ 2 ms p50, ≤ 5 ms p99"
    if added is None:
        goals.append(Goal(goal, "not measured", None))
    else:
        p50, p99 = added
        goals.append(Goal(goal, f"+{p50:.2f} ms p50, +{p99:.2f} ms p99", p50 <= 2 and p99 <= 5))
    top = find(results, COCOON, "stream", 256)
    goal = "streamed tokens/s at c=256 ≥ 25,000"
    if top is None:
        goals.append(Goal(goal, "not measured", None))
    else:
        goals.append(Goal(goal, f"{top.tokens_per_s:,.0f}", top.tokens_per_s >= 25_000))
    low = find(results, COCOON, "stream", 1)
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
    goals = [msgspec.structs.replace(g, goal=f"{g.goal} (issue 7)") for g in goals]
    if any(r.target == UNPAID for r in results):
        paid = _throughput_goal(results, "plain", 64, UNPAID, 0.9)
        goals.append(msgspec.structs.replace(paid, goal=f"{paid.goal} (issue 18)"))
        goals.append(_tail_goal(results, UNPAID, 1.0))
    return goals


def goal_table(goals: list[Goal]) -> str:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    marks = {True: "yes", False: "**no**", None: "not measured"}
    for g in goals:
        lines.append(f"| {g.goal} | {g.measured} | {marks[g.met]} |")
    return "\n".join(lines)
