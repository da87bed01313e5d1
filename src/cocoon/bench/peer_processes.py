"""The processes of a peer endpoint on this machine, found while it answers, to pin and sample.

Cocoon's servers run pinned to the servers' CPUs (`procstats.plan_cpus`). A peer
measured beside them (`--target NAME=URL`) was left wherever the OS put it: on
a 2-core machine the reference Cocoon then ran on both cores, the load
generator's included, while Cocoon had one, and made 1,223-1,331 requests/s at
c=64 where pinned it made 854. So the peer's processes are found and pinned the
same way, and sampled for CPU time as the built-in targets are.

A peer is several servers (the reference runs a client, a router, a proxy and
a worker, and calls a model server on a connection of its own per request),
so they are found by what they do: a few requests are kept in flight for a
moment, and the peer is every server (a process listening on TCP) that
worked meanwhile, with the one listening on the URL's port. The bench itself,
its ancestors and what it started are never taken. All from /proc: `net/tcp`
for listening sockets, `PID/fd` for their owners, `PID/stat` for CPU time and
parents. Off Linux, or for a peer on another machine, nothing is found and the
report says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

_PROC = Path("/proc")
_LISTEN = "0A"
# Requests kept in flight while looking, for how long, and the CPU ticks (of 1/100 s)
# a server must spend meanwhile to count as working for the peer.
_ASKERS = 4
_LOOK_S = 1.5
_BUSY_TICKS = 2


def find(
    base_url: str,
    model: str,
    api_key: str,
    exclude: Iterable[int] = (),
    seconds: float = _LOOK_S,
) -> dict[str, int]:
    """The peer's processes as {name: pid}, each pid the root of a tree that serves it (its
    descendants count with it); empty when no process here listens on the URL's port."""
    port = urlsplit(base_url).port or (443 if base_url.startswith("https") else 80)
    before = _Table()
    ours = _ours(before, set(exclude))
    stop = threading.Event()
    askers = [
        threading.Thread(target=_ask, args=(base_url, model, api_key, stop), daemon=True)
        for _ in range(_ASKERS)
    ]
    for asker in askers:
        asker.start()
    try:
        time.sleep(seconds)
        after = _Table()
    finally:
        stop.set()
        for asker in askers:
            asker.join(6)
    listening = after.listeners()
    first = listening.get(port)
    if first is None or first in ours:
        return {}
    members = {first} | {
        pid
        for pid in set(listening.values()) - ours
        if after.ticks(pid) - before.ticks(pid) >= _BUSY_TICKS
    }
    named: dict[str, int] = {}
    for pid in sorted(p for p in members if after.parent(p) not in members):
        name = after.name(pid)
        named[name if name not in named else f"{name}:{pid}"] = pid
    return named


def pin(pids: Iterable[int], cpus: list[int]) -> Callable[[], None]:
    """Pin every thread of `pids` and their descendants to `cpus`; returns what puts each
    back where it was."""
    table = _Table()
    before: dict[int, set[int]] = {}
    for pid in pids:
        for member in table.tree(pid):
            for tid in _threads(member):
                with contextlib.suppress(OSError):
                    before[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, cpus)

    def restore() -> None:
        for tid, cpus_before in before.items():
            with contextlib.suppress(OSError):  # gone since: nothing to restore
                os.sched_setaffinity(tid, cpus_before)

    return restore


def take(
    name: str,
    base_url: str,
    model: str,
    api_key: str,
    cpus: list[int],
    exclude: Iterable[int] = (),
) -> tuple[dict[str, int], Callable[[], None], str]:
    """Find peer `name`'s processes and pin them to `cpus` (the servers' CPUs; none: not
    pinned): (them, what unpins them, a note for the report)."""
    processes = find(base_url, model, api_key, exclude)
    if not processes:
        return (
            processes,
            lambda: None,
            f"{name}: no process of this machine listens on {base_url}: it ran where the OS"
            " put it, not pinned with the servers, and its CPU time was not sampled",
        )
    listed = ", ".join(f"{n} ({pid})" for n, pid in processes.items())
    if not cpus:
        return processes, lambda: None, f"{name}: served by {listed}, sampled"
    restore = pin(processes.values(), cpus)
    cpu_list = ",".join(str(c) for c in cpus)
    return (
        processes,
        restore,
        f"{name}: served by {listed}, pinned to CPU {cpu_list} as the servers, and sampled",
    )


def _ask(base_url: str, model: str, api_key: str, stop: threading.Event) -> None:
    """Ask the peer for short answers, one at a time, until stopped."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    while not stop.is_set():
        request = urllib.request.Request(f"{base_url}/chat/completions", body, headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                answer.read()
        except OSError:
            stop.wait(0.05)  # refused or failed: the looking goes on without it


def _ours(table: _Table, exclude: set[int]) -> set[int]:
    """This process, its ancestors, what it started in its session (the load generator),
    and `exclude` with their descendants: never the peer's."""
    me = os.getpid()
    session = os.getsid(me)
    ours = {me, 0, 1, *(pid for pid in table.tree(me) if _session(pid) == session)}
    parent = table.parent(me)
    while parent not in (None, 0, 1):
        ours.add(parent)
        parent = table.parent(parent)
    for pid in exclude:
        ours |= set(table.tree(pid))
    return ours


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _threads(pid: int) -> list[int]:
    try:
        return [int(t.name) for t in (_PROC / str(pid) / "task").iterdir()]
    except OSError:
        return []


class _Table:
    """One reading of /proc: each process's parent, name and CPU ticks."""

    def __init__(self) -> None:
        self._stat: dict[int, tuple[int, str, int]] = {}  # pid -> (parent, name, ticks)
        for entry in _PROC.iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    text = (entry / "stat").read_text()
                    name = text[text.index("(") + 1 : text.rindex(")")]
                    fields = text[text.rindex(")") + 2 :].split()
                    ticks = int(fields[11]) + int(fields[12])
                    self._stat[int(entry.name)] = (int(fields[1]), name, ticks)

    def parent(self, pid: int) -> int | None:
        found = self._stat.get(pid)
        return found[0] if found is not None else None

    def name(self, pid: int) -> str:
        found = self._stat.get(pid)
        return found[1] if found is not None else str(pid)

    def ticks(self, pid: int) -> int:
        found = self._stat.get(pid)
        return found[2] if found is not None else 0

    def tree(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for child, (parent, _, _) in self._stat.items():
            children.setdefault(parent, []).append(child)
        tree, queue = [], [pid]
        while queue:
            current = queue.pop()
            tree.append(current)
            queue.extend(c for c in children.get(current, []) if c != current)
        return tree

    def listeners(self) -> dict[int, int]:
        """Port -> the process holding a socket listening on it (TCP, v4 and v6)."""
        inodes: dict[int, int] = {}
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError):
                for line in (_PROC / "net" / table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if len(fields) >= 10 and fields[3] == _LISTEN:
                        inodes[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
        ports: dict[int, int] = {}
        for pid in self._stat:
            with contextlib.suppress(OSError):
                for fd in (_PROC / str(pid) / "fd").iterdir():
                    with contextlib.suppress(OSError, ValueError):
                        link = os.readlink(fd)
                        if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                            ports.setdefault(inodes[int(link[8:-1])], pid)
        return ports
