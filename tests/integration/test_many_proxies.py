"""Many proxies (issue 13): a worker serves several at once, a client fails over.

Real nodes in one event loop, real TLS on 127.0.0.1; no chain (fixed proxy
addresses, as a private network configures them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from cocoon.config import SyntheticBackendConfig
from cocoon.proxy.service import Proxy
from harness.network import InProcessNetwork, until

MESSAGES: Any = [{"role": "user", "content": "which proxy?"}]


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[InProcessNetwork, InProcessNetwork]]:
    """Two proxies, each in a network object of its own (the harness holds one each)."""
    a, b = InProcessNetwork(tmp_path / "a"), InProcessNetwork(tmp_path / "b")
    await a.start_proxy()
    await b.start_proxy()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


def addresses(*networks: InProcessNetwork) -> list[str]:
    return [f"127.0.0.1:{n.proxy.port}" for n in networks if n.proxy is not None]


def proxies(*networks: InProcessNetwork) -> list[Proxy]:
    return [n.proxy for n in networks if n.proxy is not None]


async def test_a_worker_serves_two_proxies_with_one_key_and_shared_capacity(
    two: tuple[InProcessNetwork, InProcessNetwork],
) -> None:
    a, b = two
    worker = a.launch_worker("worker1", proxies=addresses(a, b), max_active_requests=3)
    await until(lambda: all(len(p.router.workers) == 1 for p in proxies(a, b)))
    # One identity: both proxies know the worker by the same key.
    assert {next(iter(p.router.workers)) for p in proxies(a, b)} == {worker.credentials.key_id}
    links = worker.snapshot()["proxies"]
    assert [link["connected"] for link in links] == [True, True]  # type: ignore[index]
    # Each proxy's client gets answers from it.
    for net in (a, b):
        base_url = await net.start_client()
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
        answer = await client.chat.completions.create(
            model="synthetic-small", messages=MESSAGES, max_tokens=4
        )
        assert answer.choices[0].message.content
    assert worker.stats.completed == 2


async def test_capacity_is_shared_across_proxies(
    two: tuple[InProcessNetwork, InProcessNetwork],
) -> None:
    a, b = two
    slow = SyntheticBackendConfig(first_token_delay_ms=400)
    worker = a.launch_worker(
        "worker1", proxies=addresses(a, b), max_active_requests=1, synthetic=slow
    )
    await until(lambda: all(len(p.router.workers) == 1 for p in proxies(a, b)))
    url_a = await a.start_client()
    url_b = await b.start_client()
    first = asyncio.create_task(
        openai.AsyncOpenAI(base_url=url_a, api_key="x", max_retries=0).chat.completions.create(
            model="synthetic-small", messages=MESSAGES, max_tokens=2
        )
    )
    await until(lambda: worker.active == 1)
    # The one slot is taken through proxy A: proxy B's request is refused, not queued
    # behind it or run past the worker's capacity.
    with pytest.raises(openai.APIStatusError) as refused:
        await openai.AsyncOpenAI(
            base_url=url_b, api_key="x", max_retries=0
        ).chat.completions.create(model="synthetic-small", messages=MESSAGES, max_tokens=2)
    assert refused.value.status_code == 503
    assert (await first).choices[0].message.content


async def test_a_request_whose_proxy_goes_away_before_answering_goes_through_the_other(
    two: tuple[InProcessNetwork, InProcessNetwork],
) -> None:
    a, b = two
    slow = SyntheticBackendConfig(first_token_delay_ms=300)
    worker = a.launch_worker("worker1", proxies=addresses(a, b), synthetic=slow)
    await until(lambda: all(len(p.router.workers) == 1 for p in proxies(a, b)))
    base_url = await a.start_client(proxies=addresses(a, b))
    pool = a.pool
    assert pool is not None
    await until(lambda: all(s.channel is not None for s in pool.sessions.values()))
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=20)
    asked = asyncio.create_task(
        client.chat.completions.with_raw_response.create(
            model="synthetic-small", messages=MESSAGES, max_tokens=4
        )
    )
    # The proxy carrying it, while the worker has not answered yet.
    await until(lambda: any(p.inflight.running for p in proxies(a, b)))
    carrying = next(p for p in proxies(a, b) if p.inflight.running)
    other = next(p for p in proxies(a, b) if p is not carrying)
    await carrying.stop()
    raw = await asked
    assert raw.parse().choices[0].message.content
    assert pool.failovers == 1
    # Billed once, by the proxy that answered it, under the same request id.
    request_id = raw.headers["x-request-id"]
    assert other.ledger.billed(request_id)
    assert not carrying.ledger.billed(request_id)
    assert worker.stats.completed == 1
    # Later requests go through the proxy that is left.
    again = await client.chat.completions.create(
        model="synthetic-small", messages=MESSAGES, max_tokens=2
    )
    assert again.choices[0].message.content
    status = await _attestation(base_url)
    in_use = [p for p in status["proxies"] if p["in_use"]]
    assert [p["address"] for p in in_use] == [f"127.0.0.1:{other.port}"]


async def _attestation(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/attestation") as r:
        return dict(await r.json())
