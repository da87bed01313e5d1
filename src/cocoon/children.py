"""The processes of a local network: spawned, waited for, stopped in order.

`cocoon up` (and the tests that start networks node by node) run each node as
a child process of its own; this module holds what supervises them: the
local chain's process, a node's process with its ready file and log, the
wait until all are ready, the stop in order, and the ports chosen for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 60.0


class UpError(Exception):
    """The local network could not start."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    log_file: Path
    info: dict[str, object] = field(default_factory=dict)
    # How it was started (empty: it cannot be started again, like the chain).
    command: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None


def raise_open_files_limit() -> int:
    """Let this process (and the nodes it starts, which inherit it) open as many
    descriptors as the system allows: a soft limit of 1,024, common, would cap a
    gateway or proxy near a thousand connections (issue 16 asks for 10,000 idle
    ones). Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def spawn_node(
    name: str, args: list[str], run_dir: Path, verbose: bool, env: dict[str, str] | None = None
) -> Child:
    raise_open_files_limit()
    ready_file = run_dir / f"{name}.ready"
    ready_file.unlink(missing_ok=True)
    log_file = run_dir / f"{name}.log"
    command = [sys.executable, "-m", "cocoon.cli", *args, "--ready-file", str(ready_file)]
    if verbose:
        command.append("--verbose")
    return Child(name, _start(command, log_file, env), ready_file, log_file, {}, command, env)


def respawn(child: Child) -> Child:
    """The same node started again (its log goes on in the same file)."""
    child.ready_file.unlink(missing_ok=True)
    process = _start(child.command, child.log_file, child.env)
    return Child(
        child.name, process, child.ready_file, child.log_file, {}, child.command, child.env
    )


def _start(
    command: list[str], log_file: Path, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    log = open(log_file, "ab")  # noqa: SIM115 - the child owns it for its whole life
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
        # A Ctrl-C in the terminal reaches only `up`, which then stops the
        # children in order instead of all at once.
        start_new_session=True,
    )
    log.close()
    return process


@dataclass(frozen=True)
class RestartPolicy:
    """How `cocoon up` restarts a node that died."""

    # The wait before the first restart, doubled for each death in a row...
    backoff_s: float = 1.0
    # ...up to this.
    max_backoff_s: float = 30.0
    # A node that dies this many times within `window_s` is given up on: the
    # whole network stops, saying which node and why.
    max_deaths: int = 5
    window_s: float = 300.0


@dataclass
class _Deaths:
    times: list[float] = field(default_factory=list)
    restart_at: float | None = None


class Supervisor:
    """Keeps a local network's nodes running: a node that dies is restarted after a
    backoff while the others keep serving; one that keeps dying, or one that cannot
    be restarted (the chain), ends the network with the reason (`poll`'s answer).

    Takes `now` (monotonic seconds) and a `start` function, so tests drive it
    without processes or sleeps."""

    def __init__(
        self,
        children: list[Child],
        policy: RestartPolicy | None = None,
        start: Callable[[Child], Child] = respawn,
    ) -> None:
        self.children = children
        self.policy = policy or RestartPolicy()
        self._start = start
        self._deaths: dict[str, _Deaths] = {}
        self.restarts = 0

    def poll(self, now: float) -> str | None:
        """Restart what is due; the reason to stop everything, or None."""
        for index, child in enumerate(self.children):
            deaths = self._deaths.setdefault(child.name, _Deaths())
            if deaths.restart_at is not None:
                if now >= deaths.restart_at:
                    deaths.restart_at = None
                    self.children[index] = self._start(child)
                    self.restarts += 1
                    print(f"cocoon: {child.name} restarted", file=sys.stderr)
                continue
            code = child.process.poll()
            if code is None:
                continue
            why = f"{child.name} exited with code {code}; see {child.log_file}"
            if not child.command:
                return f"{why} (it cannot be restarted)"
            deaths.times = [t for t in deaths.times if now - t < self.policy.window_s] + [now]
            if len(deaths.times) >= self.policy.max_deaths:
                return (
                    f"{why}; it died {len(deaths.times)} times in "
                    f"{self.policy.window_s:.0f} s, so it is given up on:\n  " + _tail(child)
                )
            wait_s = min(
                self.policy.max_backoff_s, self.policy.backoff_s * 2 ** (len(deaths.times) - 1)
            )
            deaths.restart_at = now + wait_s
            print(f"cocoon: {why}; restarting it in {wait_s:.0f} s", file=sys.stderr)
        return None


def _tail(child: Child, lines: int = 5) -> str:
    try:
        text = child.log_file.read_text(errors="replace")
    except OSError:
        return ""
    return "\n  ".join(text.strip().splitlines()[-lines:])


def wait_ready(children: list[Child], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(children)
    while pending:
        for child in list(pending):
            if child.process.poll() is not None:
                tail = child.log_file.read_text(errors="replace").strip().splitlines()[-5:]
                raise UpError(
                    f"{child.name} exited with code {child.process.returncode}:\n  "
                    + "\n  ".join(tail)
                )
            if child.ready_file.exists():
                child.info = json.loads(child.ready_file.read_text())
                pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            raise UpError(f"{names} did not become ready in {timeout_s:.0f} s")
        if pending:
            time.sleep(0.05)


def stop_network(children: list[Child]) -> None:
    """Nodes first (they settle on chain as they exit), then the chain."""
    chain = [c for c in children if c.name == "chain"]
    stop_children([c for c in children if c.name != "chain"], timeout_s=15.0)
    stop_children(chain)
    for child in chain:
        child.ready_file.unlink(missing_ok=True)


def stop_children(children: list[Child], timeout_s: float = 5.0) -> None:
    """SIGTERM in reverse start order, then SIGKILL what is left."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in reversed(children):
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.process.wait(remaining)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def check_port_free(host: str, port: int) -> None:
    """Fail before starting anything when the API port is taken."""
    with socket.socket() as probe:
        # As the server will: a port left in TIME_WAIT is free to reuse.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UpError(
                f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port"
            ) from None


def start_chain(data_dir: Path, run_dir: Path) -> Child:
    """The local chain (wall clock, state kept in `data_dir`), once it serves."""
    from .chain.local import Ready, contracts_dir, server_command

    contracts = contracts_dir()
    command = server_command(contracts, data_dir, port=0, host="127.0.0.1", wall_clock=True)
    log_file = run_dir / "chain.log"
    log = open(log_file, "ab")  # noqa: SIM115 - the child owns it for its whole life
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        cwd=contracts,
        start_new_session=True,
    )
    log.close()
    child = Child("chain", process, run_dir / "chain.ready", log_file)
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        ready = json.loads(line)
        Ready(**ready)
    except (ValueError, TypeError):
        stop_children([child])
        tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
        raise UpError("the local chain did not start:\n  " + "\n  ".join(tail)) from None
    child.info = ready
    # Where `cocoon wallet` finds this chain while it runs (its port is chosen freely).
    child.ready_file.write_text(json.dumps(ready))
    return child


def node_role(name: str) -> str:
    """ "worker2", "worker-a" → "worker": a node's role from its name."""
    match = re.match(r"[a-z]+", name)
    if match is None:
        raise UpError(f"cannot tell the role of node {name!r}")
    return match.group()


def proxy_ports(host: str, run_dir: Path, count: int) -> list[int]:
    """Ports for the proxies: those of the last run when still free (their endpoints are
    registered on the root already), else fresh ones, remembered for the next run."""
    saved = run_dir / "proxy-ports.json"
    try:
        previous = [int(p) for p in json.loads(saved.read_text())]
    except (OSError, ValueError, TypeError):
        previous = []
    ports: list[int] = []
    for index in range(count):
        port = previous[index] if index < len(previous) else 0
        if not port or not _port_free(host, port) or port in ports:
            port = _free_port(host)
        ports.append(port)
    saved.write_text(json.dumps(ports))
    return ports


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
