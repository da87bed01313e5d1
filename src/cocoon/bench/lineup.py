"""The targets of one benchmark run, all up at once, measured load by load in turn.

Every target is started before the first load and stays up until the last, so
that each load runs on every target back to back: the ratio of two targets at
one load compares two measurements taken seconds apart, not one from the
start of the run against one from its end. On a shared machine the speed
moves in phases of tens of seconds (in round sixteen of issue 18 the same two
builds came out at 0.85 and 1.18 of each other a few minutes apart); measured
back to back, both sides of a ratio see the same phase more often.

With several rounds the order turns each round (A B, then B A), so that a
machine slowing down through a run does not always favour the target that
goes first.

A target that is not measured at a moment is idle but up. What its
processes spend meanwhile (timers, polls) lands on the server CPUs beside
the target measured, so it is sampled and reported (`idle_notes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import procstats
from .plan import RequestShape, TargetSpec

# Processes that are never charged as idle: the shared upstream serves every
# built-in target, and the local chain runs on the load generator's CPU.
_SHARED = frozenset({"upstream", "chain"})


@dataclass(frozen=True)
class Entry:
    """One target to measure, and the request it is sent."""

    spec: TargetSpec
    request: RequestShape


@dataclass
class Idle:
    """CPU seconds a target's processes spent while others were measured, over how long."""

    cpu_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class Lineup:
    """The targets up for a run, in the order they were started, and how to stop them."""

    entries: list[Entry] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)
    idle: dict[str, Idle] = field(default_factory=dict)

    def add(self, spec: TargetSpec, request: RequestShape) -> None:
        self.entries.append(Entry(spec, request))

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Run `stop` when the lineup stops (the latest added runs first)."""
        self._stops.append(stop)

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()

    def turns(self, rounds: int, loads: int) -> Iterator[tuple[int, int, Entry]]:
        """(round, load index, entry) in the order they run: each load on every
        target back to back, the targets' order reversed every other round."""
        for number in range(rounds):
            order = self.entries if number % 2 == 0 else self.entries[::-1]
            for index in range(loads):
                for entry in order:
                    yield number, index, entry

    def others(self, entry: Entry) -> dict[str, list[int]]:
        """Per target name, the processes of the targets other than `entry` (those it
        shares, such as the upstream, left out)."""
        own = set(entry.spec.processes.values())
        found: dict[str, list[int]] = {}
        for other in self.entries:
            pids = [
                pid
                for name, pid in other.spec.processes.items()
                if name not in _SHARED and pid not in own
            ]
            if pids:
                found.setdefault(_base(other.spec.name), []).extend(pids)
        return {name: sorted(set(pids)) for name, pids in found.items()}

    def count_idle(
        self, before: dict[str, procstats.Sample | None], pids: dict[str, list[int]], wall_s: float
    ) -> None:
        """Add what the other targets spent since `before` (their trees re-read)."""
        for name, tree in pids.items():
            start, end = before.get(name), procstats.sample(tree)
            if start is None or end is None:
                continue
            idle = self.idle.setdefault(name, Idle())
            idle.cpu_s += max(0.0, end.cpu_s - start.cpu_s)
            idle.wall_s += wall_s

    def idle_notes(self) -> list[str]:
        """One note per target that was up while others ran: the share of a CPU it took."""
        return [
            f"{name}, up and idle while other targets were measured, took"
            f" {idle.cpu_s / idle.wall_s:.1%} of a CPU"
            for name, idle in self.idle.items()
            if idle.wall_s > 0
        ]


def trees(pids: dict[str, list[int]]) -> dict[str, list[int]]:
    """Each target's processes with their descendants."""
    return {
        name: sorted({pid for root in roots for pid in procstats.descendants(root)})
        for name, roots in pids.items()
    }


def _base(name: str) -> str:
    """A tier's target is its network's: "cocoon[audited]" is "cocoon"."""
    return name.split("[", 1)[0]
