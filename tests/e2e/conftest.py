"""Whole networks on 127.0.0.1: `cocoon up`, or nodes started one by one to be killed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cocoon.children import (
    Child,
    node_role,
    spawn_node,
    start_chain,
    stop_children,
    stop_network,
    wait_ready,
)
from cocoon.localnet import payments_environment
from harness.ports import free_port

READY_S = 60.0


NO_AUDITS = {"COCOON_CLIENT_AUDIT__RATE": "0", "COCOON_CLIENT_AUDIT__AUDITED_RATE": "0"}


def cocoon_json(folder: Path, *args: str) -> Any:
    """`cocoon ARGS --json` run in `folder` (where `cocoon up` keeps its network, found
    by itself); its JSON output."""
    env = {k: v for k, v in os.environ.items() if k not in ("COCOON_ROOT", "COCOON_CHAIN_ENDPOINT")}
    result = subprocess.run(
        [sys.executable, "-m", "cocoon.cli", *args, "--json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"cocoon {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout)


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class UpProcess:
    """A running `cocoon up`."""

    process: subprocess.Popen[str]
    base_url: str
    models: list[str]
    proxy_status: str
    data_dir: Path
    # Every proxy's status URL, by node name ("proxy1", ...), as `cocoon up` prints them.
    proxies: dict[str, str] = field(default_factory=dict)
    # Every line `cocoon up` printed before "Ctrl-C to stop.", as "name" -> "value"
    # (e.g. "proxy1" -> "127.0.0.1:PORT · pid N · status http://...").
    printed: dict[str, str] = field(default_factory=dict)


def start_up(
    data_dir: Path, *extra: str, ready_s: float = READY_S, audits: bool = False
) -> UpProcess:
    """Run `cocoon up` as a user would, on a free port; return once it printed its URL.

    On the synthetic engine unless `extra` names one (it starts at once and
    answers in canned text, which is what most tests check), and without
    payments unless `extra` asks for them (`--payments`): most tests are about
    the inference path, and the chain adds seconds to every start.

    A port found free can be taken before `up` binds it (another node's
    ephemeral port): `up` then exits at once saying so, and is started again on
    another."""
    for _ in range(3):
        try:
            return _start_up(data_dir, *extra, ready_s=ready_s, audits=audits)
        except PortTaken:
            continue
    raise AssertionError("cocoon up found its port taken three times")


class PortTaken(Exception):
    """`cocoon up` could not bind the port it was given."""


def _start_up(data_dir: Path, *extra: str, ready_s: float, audits: bool) -> UpProcess:
    port = free_port()
    if "--engine" not in extra and "--upstream" not in extra:
        extra = ("--engine", "synthetic", *extra)
    if "--payments" not in extra:
        extra = ("--no-payments", *extra)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "cocoon.cli", "up", "--port", str(port)),
            *("--data-dir", str(data_dir), *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # The client's audits add requests of their own: on only where a test asks.
        env=None if audits else {**os.environ, **NO_AUDITS},
    )
    assert process.stdout is not None and process.stderr is not None
    # Its log lines go on while it runs: read away, or a full pipe would stall it.
    errors: list[str] = []
    reader = threading.Thread(
        target=lambda: errors.extend(e for e in process.stderr if "error" in e), daemon=True
    )
    reader.start()
    lines: dict[str, str] = {}
    proxies: dict[str, str] = {}
    deadline = time.monotonic() + ready_s
    while "Ctrl-C to stop." not in lines:
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            reader.join(10)
            if any(str(port) in e and "already in use" in e.lower() for e in errors):
                raise PortTaken(port)
            raise AssertionError(f"cocoon up exited early with code {process.returncode}")
        key, _, value = line.partition(": ")
        lines[key.strip()] = value.strip()
        if key.startswith("proxy") and " · status " in value:
            proxies[key] = value.split(" · status ")[1].strip().rstrip("/")
        if time.monotonic() > deadline:
            raise AssertionError("cocoon up did not print its base URL in time")
    return UpProcess(
        process,
        lines["OpenAI base URL"],
        [m.strip() for m in lines["models"].split(",")],
        lines["proxy status"].split(" ")[0].rstrip("/"),
        data_dir,
        proxies,
        lines,
    )


def stop_up(up: UpProcess) -> int:
    """Ctrl-C, as a user would; returns the exit code."""
    up.process.send_signal(signal.SIGINT)
    try:
        return up.process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(up.process.pid, signal.SIGKILL)
        up.process.wait()
        raise AssertionError("cocoon up did not stop within 15 s of Ctrl-C") from None


@pytest.fixture(scope="session")
def up_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """`cocoon up` exactly as a user starts it, shared by the tests of a session."""
    up = start_up(tmp_path_factory.mktemp("up"))
    try:
        yield up
    finally:
        stop_up(up)


@dataclass
class Network:
    """Nodes started one at a time, each a process of its own, so tests can kill them."""

    root: Path
    network: str = "cocoon-test"
    children: dict[str, Child] = field(default_factory=dict)
    proxy_listen: str = ""
    proxy_http: str = ""
    # Per node name: environment (payments settings), once `start_chain` ran.
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    chain_endpoint: str = ""

    def start_chain(self, nodes: list[str], **settings: object) -> None:
        """The local chain, the root and a funded wallet for each of `nodes`; those nodes
        then start with payments on (`settings`: more COCOON_<ROLE>_PAYMENTS__*)."""
        run_dir = self.root / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        chain = start_chain(self.root / "chain", run_dir)
        self.children["chain"] = chain
        self.chain_endpoint = str(chain.info["endpoint"])
        self.env = payments_environment(self.chain_endpoint, self.root, nodes)
        for name, env in self.env.items():
            prefix = f"COCOON_{node_role(name).upper()}_PAYMENTS__"
            env.update({prefix + key.upper(): str(value) for key, value in settings.items()})

    def _start(self, name: str, args: list[str]) -> Child:
        run_dir = self.root / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        env = self.env.get(name)
        if args[0] == "client":
            # Audits add requests of their own at random: the tests of them turn them on.
            env = {**NO_AUDITS, **(env or {})}
        child = spawn_node(
            name,
            [*args, "--network", self.network, "--allow-untrusted"],
            run_dir,
            False,
            env,
        )
        self.children[name] = child
        wait_ready([child], READY_S)
        return child

    def start_proxy(self, port: int = 0, name: str = "proxy") -> Child:
        """A proxy on `port`, or on one the OS gives it (`proxy_port` says which)."""
        child = self._start(
            name,
            [
                "proxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
                str(self.root / "proxy"),
            ],
        )
        self.proxy_listen = str(child.info["listen"])
        self.proxy_http = str(child.info["http"])
        return child

    @property
    def proxy_port(self) -> int:
        """The port the proxy listens on: a proxy started again takes the same."""
        return int(self.proxy_listen.rsplit(":", 1)[1])

    def start_worker(self, name: str, *extra: str) -> Child:
        return self._start(
            name,
            [
                "worker",
                "--proxy",
                self.proxy_listen,
                "--http",
                "127.0.0.1:0",
                "--data-dir",
                str(self.root / name),
                *extra,
            ],
        )

    def start_client(self, name: str = "client", *extra: str) -> str:
        child = self._start(
            name,
            [
                "client",
                "--proxy",
                self.proxy_listen,
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.root / name),
                *extra,
            ],
        )
        return str(child.info["base_url"])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        child = self.children[name]
        child.process.send_signal(sig)
        child.process.wait(10)

    def stats(self) -> Any:
        return get_json(f"{self.proxy_http}/jsonstats")

    def wait_workers(self, count: int, timeout: float = 15.0) -> None:
        wait_for(lambda: len(self.stats()["workers"]) == count, timeout)

    def ledger_row(self, request_id: str) -> dict[str, Any] | None:
        db = sqlite3.connect(self.root / "proxy" / "ledger.sqlite")
        try:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM charges WHERE request_id = ?", (request_id,)).fetchone()
            return dict(row) if row else None
        finally:
            db.close()

    def stop_nodes(self) -> None:
        """Stop every node (they settle on chain as they exit), leaving the chain up."""
        stop_children([c for n, c in self.children.items() if n != "chain"], timeout_s=15.0)

    def stop(self) -> None:
        stop_network(list(self.children.values()))


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.stop()
