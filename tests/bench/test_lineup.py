"""The lineup of a run: each load on every target back to back, the order turned each
round, and what the targets not measured spend meanwhile."""

from __future__ import annotations

import os
import time

from cocoon.bench import procstats
from cocoon.bench.lineup import Lineup
from cocoon.bench.plan import RequestShape, TargetSpec


def lineup(*targets: tuple[str, dict[str, int]]) -> Lineup:
    up = Lineup()
    for name, processes in targets:
        up.add(
            TargetSpec(name=name, base_url="http://127.0.0.1:1/v1", processes=processes),
            RequestShape(),
        )
    return up


def test_each_load_runs_on_every_target_back_to_back_the_order_turned_each_round() -> None:
    up = lineup(("cocoon", {}), ("ref", {}))
    order = [(number, load, entry.spec.name) for number, load, entry in up.turns(2, 2)]
    assert order == [
        (0, 0, "cocoon"), (0, 0, "ref"), (0, 1, "cocoon"), (0, 1, "ref"),
        (1, 0, "ref"), (1, 0, "cocoon"), (1, 1, "ref"), (1, 1, "cocoon"),
    ]  # fmt: skip


def test_the_others_are_the_targets_not_measured_less_what_is_shared() -> None:
    cocoon = {"upstream": 10, "chain": 11, "proxy1": 12, "client": 13}
    up = lineup(
        ("direct", {"upstream": 10}),
        ("cocoon", cocoon),
        ("cocoon[audited]", cocoon),
        ("ref", {"client-runner": 20, "router": 21}),
    )
    entries = {entry.spec.name: entry for entry in up.entries}
    # The upstream serves every built-in target, the chain runs beside the load.
    assert up.others(entries["ref"]) == {"cocoon": [12, 13]}
    assert up.others(entries["direct"]) == {"cocoon": [12, 13], "ref": [20, 21]}
    # A tier is its network: measuring it, the network is not idle.
    assert up.others(entries["cocoon[audited]"]) == {"ref": [20, 21]}


def test_what_an_idle_target_spends_is_counted_and_noted() -> None:
    up = lineup(("cocoon", {"client": os.getpid()}), ("ref", {}))
    pids = {"cocoon": [os.getpid()]}
    before = {"cocoon": procstats.sample([os.getpid()])}
    started = time.monotonic()
    spent = time.process_time()
    while time.process_time() - spent < 0.3:  # CPU this "idle" target spends
        pass
    up.count_idle(before, pids, time.monotonic() - started)
    assert up.idle["cocoon"].cpu_s >= 0.2
    [note] = up.idle_notes()
    assert note.startswith("cocoon, up and idle while other targets were measured, took")


def test_stop_runs_the_stops_latest_first() -> None:
    up = Lineup()
    stopped: list[str] = []
    up.on_stop(lambda: stopped.append("upstream"))
    up.on_stop(lambda: stopped.append("cocoon"))
    up.stop()
    up.stop()
    assert stopped == ["cocoon", "upstream"]
