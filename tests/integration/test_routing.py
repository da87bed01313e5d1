"""Routing outcomes the client sees as HTTP errors: no capacity, timeout, unknown model."""

from __future__ import annotations

import asyncio

import openai
import pytest

from cocoon.config import SyntheticBackendConfig

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
