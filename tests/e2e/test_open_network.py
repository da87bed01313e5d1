"""The open network as `cocoon up` starts it (DESIGN §11): a root on a local chain that
lists the image and the models, two proxies registered on it, every serving node staked.

One network for the module, of its own (the tests change its root): the stakes
`cocoon stake show` reports, the routing shares of the two workers, the root
disallowing the workers' image and the model (and allowing them again), and last a
proxy killed under load while the client fails over to the other one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from .conftest import UpProcess, cocoon_json, get_json, start_up, stop_up, wait_for

pytestmark = pytest.mark.slow

# The synthetic engine at a finite speed, so that requests are in flight when a proxy
# dies: 200 tokens/s, i.e. 5 ms a token.
TOKENS_PER_SECOND = 200
# Slack on top of the root's poll interval for a change to reach every node and for
# the request that shows it (two cores shared with other tests).
POLL_SLACK_S = 3.0


@dataclass
class OpenNetwork:
    up: UpProcess
    folder: Path  # where `cocoon up` runs: `cocoon root` and `cocoon stake` run here
    proxy_pids: dict[str, int]  # proxy endpoint host:port → pid
    worker_pids: dict[str, int]  # worker name → pid

    @property
    def model(self) -> str:
        return self.up.models[0]

    def client(self, timeout: float = 30.0) -> openai.OpenAI:
        # No retries in the SDK: the network itself must fail over.
        return openai.OpenAI(base_url=self.up.base_url, api_key="x", max_retries=0, timeout=timeout)

    def attestation(self) -> Any:
        return get_json(f"{self.up.base_url}/attestation")

    def cocoon(self, *args: str) -> Any:
        """`cocoon ARGS --json` in the network's folder; its JSON output."""
        return cocoon_json(self.folder, *args)

    def ask(self, max_tokens: int = 2) -> str:
        answer = self.client().chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=max_tokens,
        )
        content = answer.choices[0].message.content
        assert content
        return content


@pytest.fixture(scope="module")
def open_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenNetwork]:
    folder = tmp_path_factory.mktemp("open-network")
    up = start_up(
        folder / ".cocoon",
        *("--engine", "synthetic", "--payments", "--tee", "sim-tdx"),
        *("--proxies", "2", "--workers", "2", "--tokens-per-second", str(TOKENS_PER_SECOND)),
    )
    try:
        # `up` prints a line per proxy and per worker:
        #   proxy1: 127.0.0.1:PORT · pid N · status http://…/
        #   worker1: pid N · stats http://…/jsonstats
        proxies: dict[str, int] = {}
        workers: dict[str, int] = {}
        for name, value in up.printed.items():
            fields = [f.strip() for f in value.split(" · ")]
            pids = [int(f[4:]) for f in fields if f.startswith("pid ")]
            if re.fullmatch(r"proxy\d+", name):
                proxies[fields[0]] = pids[0]
            elif re.fullmatch(r"worker\d+", name):
                workers[name] = pids[0]
        assert len(proxies) == 2 and len(workers) == 2, (proxies, workers)
        net = OpenNetwork(up, folder, proxies, workers)
        # Every worker verified (through the proxy in use) before the tests start.
        wait_for(lambda: len(net.attestation()["workers"]) == 2, timeout=30)
        yield net
    finally:
        assert stop_up(up) == 0


def _error(exc: openai.APIStatusError) -> tuple[int, str | None]:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    code = error.get("code") if isinstance(error, dict) else None
    return exc.status_code, code


def _outcome(net: OpenNetwork) -> tuple[int, str | None]:
    """(HTTP status, error code or None) of one chat request."""
    try:
        net.ask()
    except openai.APIStatusError as exc:
        return _error(exc)
    return 200, None


def _poll_interval(net: OpenNetwork) -> float:
    return float(net.attestation()["root"]["poll_interval_s"])


def test_stake_show_lists_every_proxy_and_worker_at_the_minimum(open_network: OpenNetwork) -> None:
    net = open_network
    root = net.cocoon("root", "show")
    minimum = {
        "proxy": int(root["params"]["min_proxy_stake"]),
        "worker": int(root["params"]["min_worker_stake"]),
    }
    assert minimum["proxy"] > 0 and minimum["worker"] > 0
    rows = net.cocoon("stake", "show")
    assert sorted(r["node"] for r in rows) == ["proxy1", "proxy2", "worker1", "worker2"]
    for row in rows:
        role = "proxy" if row["node"].startswith("proxy") else "worker"
        assert row["deployed"] is True, row
        assert row["bonded_nano"] >= minimum[role], row
        assert row["unbond_delay"] >= int(root["params"]["unbonding_delay"]), row
    # The proxies the root registers are the ones `up` started, and the client sees them.
    assert sorted(p["endpoint"] for p in root["proxies"]) == sorted(net.proxy_pids)
    attestation = net.attestation()
    assert sorted(p["address"] for p in attestation["proxies"]) == sorted(net.proxy_pids)
    # What the client checked of each worker's stake agrees with the chain.
    workers = attestation["workers"]
    assert len(workers) == 2
    for worker in workers:
        assert worker["root"]["stake_bonded_nano"] >= minimum["worker"], worker


def test_routing_shares_over_200_sequential_requests(open_network: OpenNetwork) -> None:
    net = open_network
    keys: Counter[str] = Counter()
    body = {"model": net.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for _ in range(200):
        request = urllib.request.Request(
            f"{net.up.base_url}/chat/completions",
            json.dumps(body).encode(),
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            request_id = response.headers["x-request-id"]
            assert json.loads(response.read())["choices"][0]["message"]["content"]
        receipt = get_json(f"{net.up.base_url}/receipts/{request_id}")
        assert receipt["signature"] == "valid"
        keys[receipt["receipt"]["worker_key"]] += 1
    verified = {w["key_id"] for w in net.attestation()["workers"]}
    assert len(keys) == 2, keys
    for count in keys.values():
        assert 0.35 <= count / 200 <= 0.65, keys
    # The proxies say the same of their recent assignments (the client spreads requests
    # over both: judged where enough of them went).
    judged = 0
    for endpoint in net.proxy_pids:
        status = _proxy_status(net, endpoint)
        counts = status["requests"]["by_outcome"]
        routed = sum(n for k, n in counts.items() if k.startswith(f"{net.model}/"))
        if routed < 40:
            continue
        judged += 1
        shares = status["routing_shares"][net.model]
        assert set(shares) == verified, shares
        for share in shares.values():
            assert 0.35 <= share <= 0.65, (endpoint, shares)
    assert judged >= 1


def _proxy_status(net: OpenNetwork, endpoint: str) -> Any:
    """The /jsonstats of the proxy listening on `endpoint` (found by its `listen`)."""
    for line in (net.folder / ".cocoon" / "run").glob("proxy*.ready"):
        info = json.loads(line.read_text())
        if info["listen"] == endpoint:
            return get_json(f"{info['http']}/jsonstats")
    raise AssertionError(f"no proxy listens on {endpoint}")


def _within(what: str, predicate: Any, since: float, seconds: float) -> float:
    """Wait until `predicate()` holds, at most `seconds` after `since` (monotonic);
    how long after `since` it held."""
    deadline = since + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.1f} s")
        time.sleep(0.1)
    took = time.monotonic() - since
    print(f"{what}: {took:.1f} s")
    return took


def _listed(net: OpenNetwork) -> bool:
    return net.model in [m.id for m in net.client().models.list().data]


def _restored(net: OpenNetwork) -> bool:
    """Both workers back, everywhere: answers, the model list, the client and proxies."""
    if _outcome(net) != (200, None) or not _listed(net):
        return False
    attestation = net.attestation()
    if len(attestation["workers"]) != 2 or attestation["refused_workers"]:
        return False
    return all(len(_proxy_status(net, e)["workers"]) == 2 for e in net.proxy_pids)


def test_root_disallowing_the_worker_image_refuses_then_allows(
    open_network: OpenNetwork,
) -> None:
    net = open_network
    [image] = {w["measurements"]["image_hash"] for w in net.attestation()["workers"]}
    assert net.ask()
    bound = _poll_interval(net) + POLL_SLACK_S
    refused = (503, "image_not_on_root")

    def proxies_refuse() -> bool:
        for endpoint in net.proxy_pids:
            stats = _proxy_status(net, endpoint)
            reasons = list(stats["refused_workers"].values())
            if stats["workers"] or len(reasons) != 2:
                return False
            assert all(r.startswith("image_not_on_root") for r in reasons), reasons
        return True

    try:
        shown = net.cocoon("root", "disallow", "worker-image", image)
        changed = time.monotonic()
        assert image not in shown["worker_images"]
        _within("client refuses the image", lambda: _outcome(net) == refused, changed, bound)
        _within("both proxies refuse the image", proxies_refuse, changed, bound)
        # It stays refused, with that reason, and the client says which workers and why.
        assert [_outcome(net) for _ in range(3)] == [refused] * 3
        attestation = net.attestation()
        assert attestation["workers"] == []
        reasons = attestation["refused_workers"]
        assert len(reasons) == 2, reasons
        assert all(r.startswith("image_not_on_root") and image in r for r in reasons.values())
    finally:
        net.cocoon("root", "allow", "worker-image", image)
        changed = time.monotonic()
    _within("image allowed again: served", lambda: _outcome(net) == (200, None), changed, bound)
    _within("image allowed again: everywhere", lambda: _restored(net), changed, bound)


def test_root_disallowing_the_model_refuses_then_allows(open_network: OpenNetwork) -> None:
    net = open_network
    [model_hash] = net.cocoon("root", "show")["models"]
    assert net.ask()
    bound = _poll_interval(net) + POLL_SLACK_S

    refused = (503, "model_not_on_root")
    try:
        net.cocoon("root", "disallow", "model", model_hash)
        changed = time.monotonic()
        # (A proxy may drop the workers before the client sees the change: the model is
        # briefly unknown there, until the client says why.)
        _within("client refuses the model", lambda: _outcome(net) == refused, changed, bound)
        assert [_outcome(net) for _ in range(3)] == [refused] * 3
        assert not _listed(net)
        reasons = net.attestation()["refused_workers"]
        assert len(reasons) == 2, reasons
        assert all(r.startswith("model_not_on_root") for r in reasons.values()), reasons
        for endpoint in net.proxy_pids:
            _within(
                f"proxy {endpoint} refuses the model",
                lambda e=endpoint: not _proxy_status(net, e)["workers"],
                changed,
                bound,
            )
    finally:
        net.cocoon("root", "allow", "model", model_hash)
        changed = time.monotonic()
    _within("model allowed again: served", lambda: _outcome(net) == (200, None), changed, bound)
    _within("model allowed again: listed", lambda: _listed(net), changed, bound)
    _within("model allowed again: everywhere", lambda: _restored(net), changed, bound)


def victim_restarted(net: OpenNetwork, old_pid: int) -> bool:
    """Whether `cocoon up` started the killed proxy again (a new process)."""
    try:
        os.kill(old_pid, 0)
    except ProcessLookupError:
        return True  # the old one is gone; a connected proxy there is a new process
    return False


def _open_requests(net: OpenNetwork, proxy: str) -> int:
    [entry] = [p for p in net.attestation()["proxies"] if p["address"] == proxy]
    return int(entry["open_requests"])


def test_killing_the_proxy_in_use_mid_run_loses_no_request(open_network: OpenNetwork) -> None:
    net = open_network
    wait_for(lambda: len(net.attestation()["workers"]) == 2, timeout=10)
    [in_use] = [p for p in net.attestation()["proxies"] if p["in_use"]]
    victim = in_use["address"]
    pid = net.proxy_pids[victim]
    [survivor] = [a for a in net.proxy_pids if a != victim]

    done = 0
    lock = threading.Lock()
    enough = threading.Event()
    errors: list[str] = []

    def one(max_tokens: int) -> None:
        nonlocal done
        try:
            # 40 tokens at 200/s: 0.2 s each, so some are in flight when the proxy dies.
            net.ask(max_tokens)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            done += 1
            if done >= 12:
                enough.set()

    def sequential() -> None:
        for _ in range(25):
            one(40)

    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = [pool.submit(sequential)]
        runs += [pool.submit(one, 40) for _ in range(40)]
        assert enough.wait(30), "requests did not get going"
        # Mid-run: while the proxy in use carries some of them.
        wait_for(lambda: _open_requests(net, victim) > 0, timeout=10, interval=0.01)
        os.kill(pid, signal.SIGKILL)
        killed_at = done
        for run in runs:
            run.result(timeout=120)
    assert killed_at < 65, "the proxy died after every request was answered"
    assert done == 65
    # The network outlives the proxy; the client now uses the other one.
    assert net.up.process.poll() is None
    proxies = {p["address"]: p for p in net.attestation()["proxies"]}
    assert proxies[survivor]["connected"] is True
    # `cocoon up` restarts the proxy it lost (with backoff): it may be back already.
    assert proxies[victim]["connected"] is False or victim_restarted(net, pid)
    assert [p["in_use"] for p in proxies.values()].count(True) == 1
    # Streams too, through the survivor.
    stream = net.client().chat.completions.create(
        model=net.model,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=5,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert net.up.process.poll() is None
    # And not one request of the run failed: those the dead proxy was answering went
    # to the other one (nothing of a non-streamed answer had reached the caller).
    assert errors == [], errors
