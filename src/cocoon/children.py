"""The processes of a local network: spawned, waited for, stopped in order.

`cocoon up` (and the tests that start networks node by node) run each node as
a child process of its own; this module holds what supervises them: the
local chain's process, a node's process with its ready file and log, the
wait until all are ready, the stop in order, and the ports chosen for them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
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


def spawn_node(
    name: str, args: list[str], run_dir: Path, verbose: bool, env: dict[str, str] | None = None
) -> Child:
    ready_file = run_dir / f"{name}.ready"
    ready_file.unlink(missing_ok=True)
    log_file = run_dir / f"{name}.log"
    command = [sys.executable, "-m", "cocoon.cli", *args, "--ready-file", str(ready_file)]
    if verbose:
        command.append("--verbose")
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
    return Child(name, process, ready_file, log_file)


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
