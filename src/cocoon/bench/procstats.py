"""CPU time and memory of processes, read from /proc (Linux), and CPU pinning.

/proc rather than psutil: the numbers we need are two fields of
`/proc/PID/stat` and two lines of `/proc/PID/status`, not worth a dependency.
A process is counted with its descendants (a server that forks workers is
still one server). Where /proc is missing, readings are None and the report
says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Sample:
    """One reading of a process tree: CPU seconds so far, resident and peak resident memory."""

    cpu_s: float
    rss_bytes: int
    peak_rss_bytes: int


def available() -> bool:
    """Whether /proc can be read here."""
    return (_PROC / "self" / "stat").exists()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2 :].split()


def _cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # utime and stime: fields 14 and 15 of stat(5), here 11 and 12 after the name.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _memory(pid: int) -> tuple[int, int] | None:
    """VmRSS and VmHWM (the peak resident set size), in bytes."""
    try:
        lines = (_PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    rss = peak = 0
    for line in lines:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def sample(pids: list[int]) -> Sample | None:
    """CPU seconds and memory summed over `pids` (those still alive)."""
    cpu, rss, peak, seen = 0.0, 0, 0, False
    for pid in pids:
        seconds = _cpu_seconds(pid)
        memory = _memory(pid)
        if seconds is None or memory is None:
            continue
        seen = True
        cpu += seconds
        rss += memory[0]
        peak += memory[1]
    return Sample(cpu, rss, peak) if seen else None


def plan_cpus() -> tuple[list[int], list[int], str]:
    """Split the CPUs we may use: (load generator CPUs, server CPUs, what was done).

    The load generator gets one CPU of its own and the servers the rest, so
    that the client's event loop never competes with the servers'. With a
    single CPU there is nothing to split.
    """
    if not hasattr(os, "sched_getaffinity"):
        return [], [], "not pinned: this OS has no sched_setaffinity"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [], [], f"not pinned: only CPU {cpus[0]} is available"
    loadgen, servers = cpus[-1:], cpus[:-1]
    return (
        loadgen,
        servers,
        f"load generator (and the local chain, standing in for TON) pinned to CPU"
        f" {_cpu_list(loadgen)}; every server process (upstream, proxy, workers, client,"
        f" LiteLLM) to CPU {_cpu_list(servers)}",
    )


def _cpu_list(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def pin(cpus: list[int], pid: int = 0) -> bool:
    """Pin a process (0: this one) and, for another process, all its threads; False if refused."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return False
    tids = (threads(pid) or [pid]) if pid else [pid]
    try:
        for tid in tids:
            os.sched_setaffinity(tid, cpus)
    except OSError:
        return False
    return True


def threads(pid: int) -> list[int]:
    """The thread ids of process `pid` (none when it is gone)."""
    try:
        return [int(t.name) for t in (_PROC / str(pid) / "task").iterdir()]
    except OSError:
        return []


def pin_tree(cpus: list[int], pid: int) -> bool:
    """Pin a process, its threads and its descendants; False if any was refused."""
    pinned = pin(cpus, pid)
    for child in _children(pid):
        pinned = pin_tree(cpus, child) and pinned
    return pinned


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in (_PROC / str(pid) / "task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (OSError, ValueError):
        return []
    return found
