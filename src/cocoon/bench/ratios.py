"""Cocoon's rate over every other target's, load by load and round by round.

Where a run had several rounds (`--rounds`), a ratio is taken within one round,
both sides measured back to back, and the rounds are read together through
their median. A load where either side was failing gives no ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import msgspec

from .results import LoadResult

COCOON = "cocoon"
# Cocoon without payments, beside `cocoon` with them.
UNPAID = "cocoon-unpaid"


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


def find(
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


def rate(result: LoadResult) -> float:
    """The rate `result` is compared by (`metric`)."""
    return metric(result.load.mode)[1](result)


# A load, as (mode, concurrency), and another target's name.
PairKey = tuple[str, int, str]


def served_pairs(results: list[LoadResult]) -> dict[PairKey, list[tuple[LoadResult, LoadResult]]]:
    """Per load and other target, (Cocoon's result, the other's) for each round in which
    both were measured and both served: neither failing, the other's rate above 0."""
    ours = {(r.load.mode, r.load.concurrency, r.round): r for r in results if r.target == COCOON}
    found: dict[PairKey, list[tuple[LoadResult, LoadResult]]] = {}
    for other in results:
        mine = ours.get((other.load.mode, other.load.concurrency, other.round))
        if (
            other.target != COCOON
            and mine is not None
            and rate(other) > 0
            and not failed(mine)
            and not failed(other)
        ):
            key = (other.load.mode, other.load.concurrency, other.target)
            found.setdefault(key, []).append((mine, other))
    return found


def compute_ratios(results: list[LoadResult]) -> list[Ratio]:
    """Cocoon over every other target measured (direct, LiteLLM, the --target
    endpoints): throughput at every load, in each round (both sides from one)."""
    ratios: list[Ratio] = []
    others = [t for t in dict.fromkeys(r.target for r in results) if t != COCOON]
    for ours in (r for r in results if r.target == COCOON):
        mode, level = ours.load.mode, ours.load.concurrency
        name, value = metric(mode)
        for versus in others:
            theirs = find(results, versus, mode, level, ours.round)
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
