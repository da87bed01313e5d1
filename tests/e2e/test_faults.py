"""Faults, each node a real process on 127.0.0.1, killed with SIGKILL (issue 3).

- a worker killed before its first chunk: the request succeeds on another worker;
- a worker killed mid-stream: the client gets a clean error and is billed only
  for what the last receipt proves was delivered;
- the proxy restarted: workers and clients reconnect by themselves;
- the proxy lost while a request waits for its first chunk: the request is
  resent with the same id once the client is back (and again until the
  workers are back too), and answered once;
- a streaming client that goes away makes the worker stop.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from cocoon.pricing import Prices, price_nano

from .conftest import Network, get_json, wait_for

pytestmark = pytest.mark.slow

MODEL = "synthetic-small"
MESSAGES: list[Any] = [{"role": "user", "content": "tell me about faults"}]


def sdk(base_url: str, timeout: float = 20.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=timeout)


def worker_names(network: Network) -> dict[str, str]:
    """key id → child name, for every worker started."""
    return {
        str(child.info["key_id"]): name
        for name, child in network.children.items()
        if child.info.get("role") == "worker"
    }


def active_worker(network: Network) -> str | None:
    """The key id of the one worker the proxy is running a request on, if any."""
    busy = [w["key_id"] for w in network.stats()["workers"] if w["active"] >= 1]
    return busy[0] if len(busy) == 1 else None


def long_answers_config(tmp_path: Path) -> Path:
    """Synthetic answers long enough (≥ 200 tokens) to be killed in the middle of."""
    path = tmp_path / "worker-long.toml"
    path.write_text("[synthetic]\ndefault_max_tokens = 400\n")
    return path


def start_network(network: Network, *worker_flags: str) -> str:
    network.start_proxy()
    network.start_worker("worker-a", *worker_flags)
    network.start_worker("worker-b", *worker_flags)
    network.wait_workers(2)
    return network.start_client()


def test_worker_killed_before_first_chunk_retries_on_another(network: Network) -> None:
    base_url = start_network(network, "--first-token-delay-ms", "1500")
    client = sdk(base_url)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            client.chat.completions.with_raw_response.create,
            model=MODEL,
            messages=MESSAGES,
            max_tokens=8,
        )
        victim = wait_for(lambda: active_worker(network), timeout=10)
        names = worker_names(network)
        network.kill(names[victim], signal.SIGKILL)
        raw = future.result(timeout=20)

    assert raw.http_response.status_code == 200
    survivor = next(key for key in names if key != victim)
    assert raw.headers["x-cocoon-worker"] == survivor
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    stats = network.stats()
    assert stats["requests"]["retries"] >= 1
    assert [w["key_id"] for w in stats["workers"]] == [survivor]


def test_worker_killed_mid_stream_is_a_clean_error_billed_by_receipt(
    network: Network, tmp_path: Path
) -> None:
    started = time.monotonic()
    config = long_answers_config(tmp_path)
    base_url = start_network(network, "--config", str(config), "--tokens-per-second", "20")
    client = sdk(base_url)
    request_id = f"faults-{uuid.uuid4().hex}"
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=200,
        stream=True,
        extra_headers={"X-Request-Id": request_id},
    )
    assert raw.headers["x-request-id"] == request_id
    serving = raw.headers["x-cocoon-worker"]
    stream = raw.parse()
    received = 0
    killed_at: float | None = None
    finish_reasons: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received += 1
            if chunk.choices and chunk.choices[0].finish_reason:
                finish_reasons.append(chunk.choices[0].finish_reason)
            if received >= 20 and killed_at is None:
                network.kill(worker_names(network)[serving], signal.SIGKILL)
                killed_at = time.monotonic()
    error_at = time.monotonic()

    # A clean error event, not a timeout, a dropped connection or a normal end.
    assert type(caught.value) is openai.APIError, repr(caught.value)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body.get("code") == "worker_failed"
    assert killed_at is not None and not finish_reasons
    assert 20 <= received < 200
    assert error_at - killed_at < 5.0

    row = wait_for(lambda: network.ledger_row(request_id), timeout=5)
    assert row["final"] == 0
    assert 0 < row["completion_tokens"] <= received
    expected = price_nano(
        Prices(),
        prompt_tokens=row["prompt_tokens"],
        cached_prompt_tokens=row["cached_prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        reasoning_tokens=row["reasoning_tokens"],
        coefficient_milli=row["coefficient_milli"],
    )
    assert row["amount_nano"] == expected > 0
    # The proxy counts it as failed, not as a normal end.
    wait_for(
        lambda: network.stats()["requests"]["by_outcome"].get(f"{MODEL}/worker_failed") == 1,
        timeout=5,
    )
    assert f"{MODEL}/ok" not in network.stats()["requests"]["by_outcome"]
    assert time.monotonic() - started < 20.0


def test_proxy_restart_workers_and_clients_reconnect(network: Network) -> None:
    base_url = start_network(network)
    client = sdk(base_url)
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert first.choices[0].message.content

    network.kill("proxy", signal.SIGKILL)
    network.start_proxy(network.proxy_port, name="proxy2")
    network.wait_workers(2)

    def answered() -> Any:
        try:
            return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
        except openai.APIError:
            return None  # the client is still reconnecting

    again = wait_for(answered, timeout=15, interval=0.2)
    assert again.choices[0].message.content
    client_stats = get_json(base_url.removesuffix("/v1") + "/jsonstats")
    assert client_stats["reconnects"] >= 1
    assert client_stats["proxy"] is not None


def test_proxy_lost_before_first_chunk_request_is_resent_and_answered_once(
    network: Network,
) -> None:
    base_url = start_network(network, "--first-token-delay-ms", "1500")
    client = sdk(base_url, timeout=30)
    request_id = f"faults-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(
            client.chat.completions.create,
            model=MODEL,
            messages=MESSAGES,
            max_tokens=4,
            extra_headers={"X-Request-Id": request_id},
        )
        wait_for(lambda: active_worker(network), timeout=10)
        workers = [network.children[name].process for name in worker_names(network).values()]
        # Freeze the workers, so that the client is back before them and its
        # resent request first finds a proxy without workers.
        for process in workers:
            process.send_signal(signal.SIGSTOP)
        try:
            network.kill("proxy", signal.SIGKILL)
            network.start_proxy(network.proxy_port, name="proxy2")
            client_log = network.children["client"].log_file
            wait_for(lambda: "resent too early" in client_log.read_text(), timeout=8)
        finally:
            for process in workers:
                process.send_signal(signal.SIGCONT)
        network.wait_workers(2)
        completion = future.result(timeout=15)
    assert time.monotonic() - started < 20

    assert request_id in completion.id
    assert completion.choices[0].message.content
    row = wait_for(lambda: network.ledger_row(request_id), timeout=5)
    assert row["final"] == 1
    # The dead proxy's run may still finish on its (frozen, then resumed)
    # worker, whose connection died with that proxy: nothing of it reaches the
    # client or the ledger. The new proxy ran the resent request once and
    # billed it once.
    stats = network.stats()
    assert stats["billing"]["requests"] == 1
    ran_ok = [n for key, n in stats["requests"]["by_outcome"].items() if key.endswith("/ok")]
    assert ran_ok == [1], stats["requests"]["by_outcome"]
    network.wait_workers(2)


def test_client_going_away_mid_stream_stops_the_worker(network: Network, tmp_path: Path) -> None:
    config = long_answers_config(tmp_path)
    base_url = start_network(network, "--config", str(config), "--tokens-per-second", "20")
    request_id = f"faults-{uuid.uuid4().hex}"
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 200, "stream": True}
    headers = {
        "X-Request-Id": request_id,
        "Authorization": "Bearer x",
        "Content-Type": "application/json",
    }
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=20)
    try:
        connection.request("POST", f"{url.path}/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        assert response.status == 200
        serving = response.headers["x-cocoon-worker"]
        events = 0
        while events < 5:
            line = response.readline()
            assert line, "the stream ended early"
            if line.startswith(b"data: "):
                events += 1
    finally:
        connection.close()
    # The connection is closed in the middle of the answer.
    log_file = network.children[worker_names(network)[serving]].log_file

    def worker_stopped() -> bool:
        lines = [ln for ln in log_file.read_text().splitlines() if f"request {request_id}" in ln]
        return any("status=cancelled" in ln or "status=disconnected" in ln for ln in lines)

    wait_for(worker_stopped, timeout=5)
    wait_for(lambda: all(w["active"] == 0 for w in network.stats()["workers"]), timeout=5)
    row = wait_for(lambda: network.ledger_row(request_id), timeout=5)
    assert row["final"] == 0
    assert 0 < row["completion_tokens"] < 200
