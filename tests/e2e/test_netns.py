"""Two proxies, workers and a client on hosts of their own (network namespaces), the
proxies found on the root of the local chain; one proxy's host loses every process and
the client keeps answering through the other (issue 13, DESIGN §11 "Many proxies").

Hosts on 10.213.0.0/24: .1 the chain and the client, .2 and .3 a proxy each, .4 the
workers. Every node follows the root (`--proxies root`): the proxies' endpoints, node
keys and stakes come from the chain, never from the command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cocoon.chain.local import contracts_dir, server_command
from cocoon.children import Child, stop_children, wait_ready
from cocoon.localnet import governed_environment
from harness.netns import Host, Lan, NetnsUnavailable

from .conftest import NO_AUDITS, READY_S, wait_for

pytestmark = pytest.mark.slow

NETWORK = "cocoon-netns"
MODEL = "synthetic-small"
PROXY_PORT = 7000  # each proxy on its own host: one port for both
PROXY_HTTP_PORT = 7001
CLIENT_PORT = 8080
REQUESTS = 60
BEFORE = 20  # answered before the kill
IN_FLIGHT = 8  # sent to frozen workers, then one proxy is killed under them


@pytest.fixture
def lan() -> Iterator[Lan]:
    lan = Lan(["main", "proxya", "proxyb", "workers"])
    try:
        try:
            lan.create()
        except NetnsUnavailable as exc:
            pytest.skip(f"ip netns not permitted here: {exc}")
        yield lan
    finally:
        lan.destroy()


@dataclass
class Nodes:
    """Processes started on the LAN's hosts; stopped (nodes, then the chain) at the end."""

    lan: Lan
    root: Path
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        path = self.root / "run"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_chain(self) -> str:
        """The local chain on the main host, on its LAN address; its endpoint."""
        host = self.lan["main"]
        contracts = contracts_dir()
        command = server_command(
            contracts, self.root / "chain", port=0, host=host.address, wall_clock=True
        )
        log_file = self.run_dir / "chain.log"
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                host.command(command),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=contracts,
                start_new_session=True,
            )
        self.children["chain"] = Child("chain", process, self.run_dir / "chain.ready", log_file)
        assert process.stdout is not None
        with ThreadPoolExecutor(1) as reader:
            line = reader.submit(process.stdout.readline)
            try:
                ready = json.loads(line.result(timeout=READY_S))
            except Exception:
                process.kill()
                raise AssertionError(
                    f"the local chain did not start: {log_file.read_text(errors='replace')[-500:]}"
                ) from None
        return str(ready["endpoint"])

    def spawn(self, host: Host, name: str, args: list[str], env: dict[str, str]) -> Child:
        """`cocoon <args>` on `host` as node `name` (ready file and log in run/)."""
        ready_file = self.run_dir / f"{name}.ready"
        log_file = self.run_dir / f"{name}.log"
        command = [*args, "--data-dir", str(self.root / name), "--ready-file", str(ready_file)]
        command = [sys.executable, "-m", "cocoon.cli", *command]
        with open(log_file, "ab") as log:
            process = subprocess.Popen(
                host.command(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
            )
        child = Child(name, process, ready_file, log_file)
        self.children[name] = child
        return child

    def stop(self) -> None:
        nodes = [c for name, c in self.children.items() if name != "chain"]
        stop_children(nodes, timeout_s=10.0)
        stop_children([c for name, c in self.children.items() if name == "chain"])


@pytest.fixture
def nodes(lan: Lan, tmp_path: Path) -> Iterator[Nodes]:
    started = Nodes(lan, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def chat(base_url: str, index: int) -> dict[str, Any]:
    """One chat completion through the client's OpenAI API; its answer (raises on an error)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"request {index}: tell me about the sea"}],
        "max_tokens": 8,
    }
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    assert answer["choices"][0]["message"]["content"], answer
    return answer


def test_client_keeps_answering_when_one_proxy_host_dies(lan: Lan, nodes: Nodes) -> None:
    main, workers_host = lan["main"], lan["workers"]
    proxy_hosts = {"proxy1": lan["proxya"], "proxy2": lan["proxyb"]}
    endpoints = {name: f"{host.address}:{PROXY_PORT}" for name, host in proxy_hosts.items()}
    started = time.monotonic()

    # The chain and the root: the proxies registered at their LAN endpoints, all staked.
    endpoint = nodes.start_chain()
    root, env = main.call(
        governed_environment,
        endpoint,
        nodes.root,
        [*proxy_hosts, "worker1", "worker2", "client"],
        images=[],
        models=[MODEL],
        proxy_endpoints=endpoints,
    )
    common = ["--network", NETWORK, "--allow-untrusted"]
    proxies = [
        nodes.spawn(
            host,
            name,
            [
                "proxy",
                *common,
                "--listen",
                endpoints[name],
                "--http",
                f"{host.address}:{PROXY_HTTP_PORT}",
            ],
            env[name],
        )
        for name, host in proxy_hosts.items()
    ]
    wait_ready(proxies, READY_S)
    for name in ("worker1", "worker2"):
        nodes.spawn(
            workers_host,
            name,
            ["worker", *common, "--proxies", "root", "--http", f"{workers_host.address}:0"],
            env[name],
        )
    client_args = ["client", *common, "--proxies", "root"]
    nodes.spawn(
        main,
        "client",
        [*client_args, "--listen", f"{main.address}:{CLIENT_PORT}"],
        # No random audits: the test counts the requests in flight.
        {**env["client"], **NO_AUDITS},
    )
    wait_ready([nodes.children[n] for n in ("worker1", "worker2", "client")], READY_S)
    base_url = str(nodes.children["client"].info["base_url"])
    client_stats = f"http://{main.address}:{CLIENT_PORT}/jsonstats"
    assert main.address in base_url

    def proxies_status() -> list[dict[str, Any]]:
        return list(main.call(get_json, client_stats)["proxies"])

    def proxy_workers(host: Host) -> int:
        stats = host.call(get_json, f"http://{host.address}:{PROXY_HTTP_PORT}/jsonstats")
        return len(stats["workers"])

    def ready() -> bool:
        # The client holds both proxies from the root; each proxy has both workers.
        held = proxies_status()
        if sorted(p["address"] for p in held if p["connected"]) != sorted(endpoints.values()):
            return False
        return all(proxy_workers(host) == 2 for host in proxy_hosts.values())

    wait_for(ready, timeout=30, interval=0.2)
    root_view = main.call(get_json, client_stats)["root"]
    assert root_view is not None and root in json.dumps(root_view)

    answered = [main.call(chat, base_url, i) for i in range(BEFORE)]

    # Freeze the workers, so that no answer can have begun when the proxy dies: every
    # request in flight is then one the client must move to the other proxy.
    workers_host.signal_all(signal.SIGSTOP)
    try:
        flying: list[Future[dict[str, Any]]] = [
            main.submit(chat, base_url, BEFORE + i) for i in range(IN_FLIGHT)
        ]

        def all_in_flight() -> list[dict[str, Any]] | None:
            held = proxies_status()
            return held if sum(p["open_requests"] for p in held) == IN_FLIGHT else None

        held = wait_for(all_in_flight, timeout=15)
        # The proxy carrying most of them (the client's choice among its two is random).
        busiest = max(held, key=lambda p: (p["open_requests"], p["in_use"]))
        victim = next(n for n, e in endpoints.items() if e == busiest["address"])
        survivor = next(n for n in endpoints if n != victim)
        killed = proxy_hosts[victim].signal_all(signal.SIGKILL)
        assert nodes.children[victim].process.pid in killed
        nodes.children[victim].process.wait(10)
        wait_for(lambda: not proxy_hosts[victim].pids(), timeout=10)
    finally:
        workers_host.signal_all(signal.SIGCONT)
    answered += [future.result(timeout=30) for future in flying]

    # Every later request through the survivor.
    answered += [main.call(chat, base_url, i) for i in range(BEFORE + IN_FLIGHT, REQUESTS)]
    assert len(answered) == REQUESTS
    assert len({a["id"] for a in answered}) == REQUESTS

    held = {p["address"]: p for p in proxies_status()}
    assert held[endpoints[survivor]]["connected"] and held[endpoints[survivor]]["in_use"]
    assert not held[endpoints[victim]]["connected"]
    # Each request the dead proxy held was moved once, to the survivor.
    client_log = nodes.children["client"].log_file.read_text(errors="replace")
    moved = f"lost proxy {endpoints[victim]} before the answer; sending it through proxy"
    assert client_log.count(f"{moved} {endpoints[survivor]}") == busiest["open_requests"] > 0
    assert time.monotonic() - started < 90
