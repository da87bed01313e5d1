"""Routing through real nodes: errors the client sees (no capacity, timeout, unknown
model) and how requests spread over workers (fair shares, newcomers, slow workers,
operator caps)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import msgspec
import openai
import pytest

from cocoon.config import SyntheticBackendConfig
from cocoon.worker import service as worker_service
from cocoon.worker.service import Worker
from harness.network import until

from .conftest import InProcessNetwork

CHAT = {"model": "synthetic-small", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_full_worker_answers_503(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker(
        "w", max_active_requests=1, synthetic=SyntheticBackendConfig(first_token_delay_ms=800)
    )
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    slow = asyncio.create_task(client.chat.completions.create(**CHAT, max_tokens=2))  # type: ignore[call-overload]
    assert inproc.proxy is not None
    proxy = inproc.proxy
    for _ in range(200):
        if any(w.active for w in proxy.router.workers.values()):
            break
        await asyncio.sleep(0.01)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(**CHAT, max_tokens=2)  # type: ignore[call-overload]
    assert info.value.status_code == 503
    assert (await slow).choices[0].finish_reason == "length"
    await client.close()


async def test_a_slow_worker_times_out_with_504(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w", synthetic=SyntheticBackendConfig(first_token_delay_ms=3000))
    base_url = await inproc.start_client(request_timeout_s=0.3)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert info.value.status_code == 504
    assert info.value.body["code"] == "timeout"  # type: ignore[index]
    await client.close()


async def test_models_from_every_worker_are_listed_and_unknown_is_404(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("a", models=["alpha"])
    await inproc.start_worker("b", models=["beta", "alpha"])
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    assert sorted(m.id for m in (await client.models.list()).data) == ["alpha", "beta"]
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="gamma", messages=CHAT["messages"])  # type: ignore[arg-type]
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
    answer = await client.chat.completions.create(model="beta", messages=CHAT["messages"])  # type: ignore[arg-type]
    assert answer.model == "beta"
    await client.close()


async def test_a_retry_with_the_same_id_runs_and_bills_once(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    first = await inproc.start_worker("a")
    second = await inproc.start_worker("b")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    headers = {"X-Request-Id": "retry-me-1"}
    one = await client.chat.completions.create(**CHAT, extra_headers=headers)  # type: ignore[call-overload]
    two = await client.chat.completions.create(**CHAT, extra_headers=headers)  # type: ignore[call-overload]
    assert one.choices[0].message.content == two.choices[0].message.content
    assert first.stats.requests + second.stats.requests == 1
    assert inproc.proxy is not None
    assert inproc.proxy.ledger.totals().requests == 1
    await client.close()


async def test_a_request_id_reused_for_another_request_is_409(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("a")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    headers = {"X-Request-Id": "reused-1"}
    await client.chat.completions.create(**CHAT, extra_headers=headers)  # type: ignore[call-overload]
    with pytest.raises(openai.ConflictError) as info:
        await client.chat.completions.create(
            model="synthetic-small",
            messages=[{"role": "user", "content": "something else"}],
            extra_headers=headers,
        )
    assert info.value.body["code"] == "duplicate_request_id"  # type: ignore[index]
    await client.close()


async def test_receipts_bill_the_workers_coefficient(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("a", coefficient_milli=2500)
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(**CHAT, max_tokens=4)  # type: ignore[call-overload]
    request_id = raw.headers["x-request-id"]
    assert inproc.proxy is not None
    charge = inproc.proxy.ledger.charge(request_id)
    assert charge is not None
    assert charge["coefficient_milli"] == 2500
    prices = inproc.proxy.config.prices
    usage = raw.parse().usage
    expected = (
        (usage.prompt_tokens * prices.prompt_milli + 4 * prices.completion_milli)
        * prices.base_nano_per_token
        * 2500
        // 10**6
    )
    assert charge["amount_nano"] == expected
    await client.close()


async def test_clients_learn_of_new_workers_without_waiting_for_their_cache(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("a")
    base_url = await inproc.start_client(directory_ttl_s=3600.0)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert inproc.session is not None
    assert len(await inproc.session.workers()) == 1
    late = await inproc.start_worker("b")
    for _ in range(200):  # bounded poll: the proxy's push is in flight
        if len(await inproc.session.workers()) == 2:
            break
        await asyncio.sleep(0.01)
    assert {w.key_id for w in await inproc.session.workers()} >= {late.credentials.key_id}
    await late.stop()
    for _ in range(200):
        if len(await inproc.session.workers()) == 1:
            break
        await asyncio.sleep(0.01)
    assert late.credentials.key_id not in {w.key_id for w in await inproc.session.workers()}
    await client.close()


# -- fair shares ---------------------------------------------------------------
# Sequential requests, as one chat user sends them: the case the old "lowest latency
# estimate" router sent 29 of 30 of to one worker.


async def _served(client: openai.AsyncOpenAI, workers: list[Worker], n: int) -> list[int]:
    """Send `n` requests one after the other; how many each worker served."""
    before = [w.stats.requests for w in workers]
    for _ in range(n):
        await client.chat.completions.create(**CHAT, max_tokens=1)  # type: ignore[call-overload]
    return [w.stats.requests - b for w, b in zip(workers, before, strict=True)]


async def _joined(inproc: InProcessNetwork, count: int) -> None:
    """Wait (bounded) until the client's directory lists `count` workers."""
    assert inproc.session is not None
    for _ in range(500):
        if len(await inproc.session.workers()) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the client never saw {count} workers")


def _with_wallet(monkeypatch: pytest.MonkeyPatch, wallet: str) -> None:
    """Workers started from now on announce `wallet` (as a paid worker announces its
    payee address), without a chain."""
    announce = worker_service.WorkerAnnounce
    monkeypatch.setattr(
        worker_service,
        "WorkerAnnounce",
        lambda *a, **k: msgspec.structs.replace(announce(*a, **k), wallet=wallet),
    )


@pytest.mark.parametrize("max_share", [0.5, 1.0], ids=["default-cap", "no-cap"])
async def test_two_equal_workers_share_200_sequential_requests(
    inproc: InProcessNetwork, max_share: float
) -> None:
    proxy = await inproc.start_proxy()
    # Without the cap, the two choices and the decaying estimates alone spread the load.
    proxy.router.config = replace(proxy.router.config, max_share=max_share)
    workers = [await inproc.start_worker(name) for name in ("a", "b")]
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await _joined(inproc, 2)
    started = time.monotonic()
    served = await _served(client, workers, 200)
    print(f"200 sequential requests, max_share {max_share}: {served}")
    print(f"  in {time.monotonic() - started:.1f} s")
    assert sum(served) == 200
    # With the cap, near halves. Without it, what the estimates see decides: on a busy
    # machine one worker answers slower for a stretch and is rightly asked less
    # (51-149 seen with four copies of this test at once on two cores), but neither
    # is forgotten.
    low = 70 if max_share < 1 else 40
    assert all(low <= n <= 200 - low for n in served), served
    shares = proxy.snapshot()["routing_shares"]["synthetic-small"]  # type: ignore[index]
    assert sorted(shares) == sorted(w.credentials.key_id for w in workers)
    await client.close()


async def test_a_worker_that_joins_late_gets_the_next_request(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    first = [await inproc.start_worker(name) for name in ("a", "b")]
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await _joined(inproc, 2)
    await _served(client, first, 40)
    late = await inproc.start_worker("late")
    await _joined(inproc, 3)
    # Probed at once (not left to a tie with the slowest, which passed it by for 20
    # requests in a row in ~3 % of runs)...
    assert await _served(client, [late, *first], 1) == [1, 0, 0]
    # ...and then one among equals.
    served = await _served(client, [late, *first], 60)
    print(f"60 sequential requests to late, a, b after the probe: {served}")
    assert served[0] >= 5, served
    await client.close()


async def test_a_worker_twice_as_slow_gets_less_traffic_but_some(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    fast = [
        await inproc.start_worker(name, synthetic=SyntheticBackendConfig(first_token_delay_ms=15))
        for name in ("fast1", "fast2")
    ]
    slow = await inproc.start_worker(
        "slow", synthetic=SyntheticBackendConfig(first_token_delay_ms=30)
    )
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await _joined(inproc, 3)
    served = await _served(client, [*fast, slow], 150)
    print(f"150 sequential requests to fast, fast, slow: {served}")
    assert 0 < served[2] < min(served[:2]), served
    await client.close()


async def test_workers_of_one_operator_share_one_cap(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    await inproc.start_proxy()
    # Two fast workers of one wallet, one slower worker of another: uncapped, the
    # fast pair would take nearly everything (see test_router_fairness).
    fast = SyntheticBackendConfig(first_token_delay_ms=5)
    _with_wallet(monkeypatch, "EQ-operator-one")
    pair = [await inproc.start_worker(name, synthetic=fast) for name in ("a", "b")]
    _with_wallet(monkeypatch, "EQ-operator-two")
    other = await inproc.start_worker(
        "c", synthetic=SyntheticBackendConfig(first_token_delay_ms=15)
    )
    assert inproc.proxy is not None
    router = inproc.proxy.router
    await until(lambda: len(router.workers) == 3)
    operators = {w.key_id: w.operator for w in router.workers.values()}
    assert operators[pair[0].credentials.key_id] == operators[pair[1].credentials.key_id]
    assert operators[other.credentials.key_id] == "EQ-operator-two"
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await _joined(inproc, 3)
    await _served(client, [*pair, other], 100)
    served = await _served(client, [*pair, other], 100)  # the window, once full
    print(f"100 sequential requests to a, b (one operator) and c: {served}")
    assert served[0] + served[1] <= 52, served
    assert served[2] <= 52, served
    assert served[0] > 0 and served[1] > 0, served
    await client.close()
