"""The processes of a peer endpoint on this machine, found while it answers, to pin and sample.

Cocoon's servers run pinned to the servers' CPUs (`procstats.plan_cpus`). A peer
measured beside them (`--target NAME=URL`) was left wherever the OS put it: on
a 2-core machine the reference Cocoon then ran on both cores, the load
generator's included, while Cocoon had one, and made 1,223-1,331 requests/s at
c=64 where pinned it made 854. So the peer's processes are found and pinned the
same way, and sampled for CPU time as the built-in targets are.

A peer is several servers (the reference runs a client, a router, a proxy and
a worker, and its worker calls a model server on a connection of its own per
request), so they are found by their connections while a few requests are
in flight: from the process listening on the URL's port, every process here
at the other end of a connection one of them holds, either way, and every
server whose port saw about as many connections closed meanwhile as the peer
answered requests. The bench itself, its ancestors and what it started are never
taken. All from /proc: `net/tcp` for connections, `PID/fd` for their owners,
`PID/stat` for parents. Off Linux, or for a peer on another machine, nothing is
found and the report says so.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from . import procstats

_PROC = Path("/proc")
_LISTEN = "0A"
_ESTABLISHED, _TIME_WAIT = "01", "06"
# Requests kept in flight while looking, and for how long.
_ASKERS = 4
_LOOK_S = 1.5


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
    stop = threading.Event()
    answered: list[int] = []
    askers = [
        threading.Thread(target=_ask, args=(base_url, model, api_key, stop, answered), daemon=True)
        for _ in range(_ASKERS)
    ]
    for asker in askers:
        asker.start()
    try:
        time.sleep(min(0.2, seconds))
        table = _Table()
        ours = _ours(table, set(exclude))
        listening = table.listeners()
        first = listening.get(port)
        if first is None or first in ours:
            return {}
        closed_before, asked_before = _closed(), len(answered)
        time.sleep(seconds)
        closed = _closed_by_port(closed_before, _closed())
        asked = len(answered) - asked_before
        table = _Table()
        listening = table.listeners()
    finally:
        stop.set()
        for asker in askers:
            asker.join(6)
    members = {first}
    # Every connection the members hold to another process here, both ways (the
    # reference's client, router, proxy and worker keep theirs open)...
    while more := _connected(members, table.owners(), listening, ours):
        members |= more
    # ...and the servers they called on a connection of their own per request (the
    # reference's worker, its model server): as many connections to the server's port
    # were closed meanwhile as the peer answered requests, give or take.
    members |= {
        pid
        for listened, pid in listening.items()
        if pid not in ours and closed[listened] >= max(_ASKERS, asked // 2)
    }
    named: dict[str, int] = {}
    for pid in sorted(p for p in members if table.parent(p) not in members):
        name = table.name(pid)
        named[name if name not in named else f"{name}:{pid}"] = pid
    return named


def _connected(
    members: set[int], owners: dict[int, int], listening: dict[int, int], ours: set[int]
) -> set[int]:
    """The processes at the other end of the members' connections within this machine:
    the owner of the port a member connected to, or of the socket that connected to one."""
    found: set[int] = set()
    by_ends: dict[tuple[str, str], int] = {}
    ends = _established()
    for inode, (local, remote) in ends.items():
        by_ends[(local, remote)] = inode
    for inode, (local, remote) in ends.items():
        if owners.get(inode) not in members:
            continue
        other = owners.get(by_ends.get((remote, local), -1))
        if other is None:
            other = listening.get(int(remote.rsplit(":", 1)[1], 16))
        if other is not None and other not in members and other not in ours:
            found.add(other)
    return found


def pin(pids: Iterable[int], cpus: list[int]) -> Callable[[], None]:
    """Pin every thread of `pids` and their descendants to `cpus`; returns what puts each
    back where it was."""
    before: dict[int, set[int]] = {}
    for pid in pids:
        for member in procstats.descendants(pid):
            for tid in procstats.threads(member):
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


def _ask(
    base_url: str, model: str, api_key: str, stop: threading.Event, answered: list[int]
) -> None:
    """Ask the peer for short answers, one at a time on one kept-alive connection (as the
    load generator does: a peer may keep what each new connection costs), until stopped."""
    url = urlsplit(base_url)
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    connection_type = (
        http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(url.hostname or "127.0.0.1", url.port, timeout=5)
    try:
        while not stop.is_set():
            try:
                connection.request("POST", f"{url.path}/chat/completions", body, headers)
                connection.getresponse().read()
                answered.append(1)
            except (OSError, http.client.HTTPException):
                connection.close()  # refused or failed: the looking goes on without it
                stop.wait(0.05)
    finally:
        connection.close()


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


def _tcp_sockets() -> Iterator[list[str]]:
    """The fields of each line of /proc/net/tcp and tcp6: local and remote address (1, 2),
    state (3), socket inode (9)."""
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (_PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 10:
                    yield fields


def _established() -> dict[int, tuple[str, str]]:
    """Socket inode -> (local, remote) of each TCP connection within this machine."""
    return {
        int(fields[9]): (fields[1], fields[2])
        for fields in _tcp_sockets()
        if fields[3] == _ESTABLISHED and fields[9] != "0" and _same_host(fields[1], fields[2])
    }


def _same_host(local: str, remote: str) -> bool:
    """A connection within this machine: to a loopback address or to its own address."""
    local_ip, remote_ip = local.rsplit(":", 1)[0], remote.rsplit(":", 1)[0]
    if remote_ip == local_ip:
        return True
    if len(remote_ip) == 8:  # IPv4, little-endian hex: 127.x.y.z ends in 7F
        return remote_ip.endswith("7F")
    # IPv6 ::1, or IPv4-mapped 127.x.y.z
    return remote_ip == "00000000000000000000000001000000" or (
        remote_ip.startswith("0000000000000000FFFF0000") and remote_ip.endswith("7F")
    )


def _closed() -> set[tuple[str, str]]:
    """The connections within this machine in TIME_WAIT (closed in the last minute), as
    (local, remote) ends."""
    return {(fields[1], fields[2]) for fields in _tcp_sockets() if fields[3] == _TIME_WAIT}


def _closed_by_port(before: set[tuple[str, str]], after: set[tuple[str, str]]) -> Counter[int]:
    """How many connections closed between two readings of `_closed` each port had, counted
    at both ends (one closed earlier ends its minute meanwhile: set arithmetic, not counts)."""
    counts: Counter[int] = Counter()
    for ends in after - before:
        for end in ends:
            counts[int(end.rsplit(":", 1)[1], 16)] += 1
    return counts


def _owners_of(pids: Iterable[int]) -> dict[int, int]:
    """Socket inode -> which of `pids` holds it."""
    owners: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in (_PROC / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        owners.setdefault(int(link[8:-1]), pid)
    return owners


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


class _Table:
    """One reading of /proc: each process's parent and name, and who holds which socket."""

    def __init__(self) -> None:
        self._stat: dict[int, tuple[int, str]] = {}  # pid -> (parent, name)
        for entry in _PROC.iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    text = (entry / "stat").read_text()
                    name = text[text.index("(") + 1 : text.rindex(")")]
                    fields = text[text.rindex(")") + 2 :].split()
                    self._stat[int(entry.name)] = (int(fields[1]), name)
        self._owners: dict[int, int] | None = None

    def parent(self, pid: int) -> int | None:
        found = self._stat.get(pid)
        return found[0] if found is not None else None

    def name(self, pid: int) -> str:
        found = self._stat.get(pid)
        return found[1] if found is not None else str(pid)

    def tree(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for child, (parent, _) in self._stat.items():
            children.setdefault(parent, []).append(child)
        tree, queue = [], [pid]
        while queue:
            current = queue.pop()
            tree.append(current)
            queue.extend(c for c in children.get(current, []) if c != current)
        return tree

    def owners(self) -> dict[int, int]:
        """Socket inode -> the process holding it, for every process (read once)."""
        if self._owners is None:
            self._owners = _owners_of(self._stat)
        return self._owners

    def listeners(self) -> dict[int, int]:
        """Port -> the process holding a socket listening on it (TCP, v4 and v6)."""
        inodes = {
            int(fields[9]): int(fields[1].rsplit(":", 1)[1], 16)
            for fields in _tcp_sockets()
            if fields[3] == _LISTEN
        }
        return {
            port: pid
            for inode, pid in self.owners().items()
            if (port := inodes.get(inode)) is not None
        }
