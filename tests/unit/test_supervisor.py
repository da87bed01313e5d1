"""`cocoon up`'s supervision of its nodes (children.py; issue 16, item 6), driven with
stand-in processes and a clock passed in: restarts with backoff, the others untouched,
and a node that keeps dying (or cannot be restarted) ends the network with the reason."""

from __future__ import annotations

import resource
from pathlib import Path

from cocoon.children import Child, RestartPolicy, Supervisor, raise_open_files_limit

POLICY = RestartPolicy(backoff_s=1.0, max_backoff_s=8.0, max_deaths=4, window_s=100.0)


class Process:
    """What the supervisor asks of a process: whether it has exited, and how."""

    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


def node(name: str, tmp_path: Path, restartable: bool = True) -> Child:
    log = tmp_path / f"{name}.log"
    log.write_text(f"{name} started\n{name}: something broke\n")
    return Child(
        name,
        Process(),  # type: ignore[arg-type]
        tmp_path / f"{name}.ready",
        log,
        command=["cocoon", name] if restartable else [],
    )


def network(tmp_path: Path) -> tuple[Supervisor, list[Child]]:
    started: list[Child] = []

    def start(child: Child) -> Child:
        fresh = Child(child.name, Process(), child.ready_file, child.log_file, {}, child.command)  # type: ignore[arg-type]
        started.append(fresh)
        return fresh

    children = [node("chain", tmp_path, restartable=False), node("worker1", tmp_path)]
    children.append(node("worker2", tmp_path))
    return Supervisor(children, POLICY, start), started


def die(child: Child, code: int = -9) -> None:
    child.process.returncode = code  # type: ignore[misc]


def test_a_dead_node_is_restarted_after_a_backoff_and_the_others_are_left_alone(
    tmp_path: Path,
) -> None:
    supervisor, started = network(tmp_path)
    worker2 = supervisor.children[2]
    die(supervisor.children[1])
    assert supervisor.poll(0.0) is None
    assert started == []  # not at once: after the backoff
    assert supervisor.poll(0.9) is None and started == []
    assert supervisor.poll(1.0) is None
    assert [c.name for c in started] == ["worker1"]
    assert supervisor.children[1] is started[0]
    assert supervisor.children[2] is worker2
    assert supervisor.restarts == 1


def test_the_backoff_doubles_for_each_death_in_a_row(tmp_path: Path) -> None:
    supervisor, started = network(tmp_path)
    now = 0.0
    waits = []
    for _ in range(3):
        die(supervisor.children[1])
        assert supervisor.poll(now) is None
        died_at = now
        while len(started) < len(waits) + 1:
            now += 0.5
            assert supervisor.poll(now) is None
        waits.append(now - died_at)
    assert waits == [1.0, 2.0, 4.0]


def test_a_node_that_keeps_dying_ends_the_network_saying_which_and_why(tmp_path: Path) -> None:
    supervisor, started = network(tmp_path)
    now = 0.0
    reason = None
    while reason is None:
        die(supervisor.children[1], code=3)
        reason = supervisor.poll(now)
        now += 10.0
        if reason is None:
            assert supervisor.poll(now) is None  # restarted
    assert len(started) == POLICY.max_deaths - 1
    assert "worker1 exited with code 3" in reason
    assert "4 times" in reason and "something broke" in reason


def test_deaths_far_apart_never_add_up_to_giving_up(tmp_path: Path) -> None:
    supervisor, started = network(tmp_path)
    for round_ in range(10):
        now = round_ * POLICY.window_s
        die(supervisor.children[1])
        assert supervisor.poll(now) is None
        assert supervisor.poll(now + POLICY.max_backoff_s) is None
    assert len(started) == 10


def test_the_chain_cannot_be_restarted_and_ends_the_network(tmp_path: Path) -> None:
    supervisor, started = network(tmp_path)
    die(supervisor.children[0], code=1)
    reason = supervisor.poll(0.0)
    assert reason is not None and reason.startswith("chain exited with code 1")
    assert "cannot be restarted" in reason
    assert started == []


def test_the_open_files_limit_is_raised_to_what_the_system_allows() -> None:
    soft = raise_open_files_limit()
    now_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == now_soft
    assert hard == resource.RLIM_INFINITY or now_soft == hard
