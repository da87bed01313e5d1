"""Verified work through real nodes (DESIGN §11): audits catch a lying worker, the
replicated tier answers what honest workers agree on, tiers choose the workers."""

from __future__ import annotations

import time

import aiohttp
import openai
import pytest

from cocoon.audit.reports import verify_report
from cocoon.config import AuditConfig, TeeConfig
from cocoon.worker.backends.base import Backend
from cocoon.worker.backends.lying import LyingBackend, LyingConfig
from harness.network import NETWORK, until

from .conftest import InProcessNetwork

MODEL = "synthetic-small"


def liar(rate: float, mode: str = "other_model", salt: str = "") -> object:
    def wrap(backend: Backend) -> Backend:
        config = LyingConfig(lie_rate=rate, lie_mode=mode, salt=salt)  # type: ignore[arg-type]
        return LyingBackend(backend, config)

    return wrap


def chat(n: int, **extra: object) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"question number {n} about audits"}],
        "max_tokens": 24,
        **extra,
    }


async def test_audits_take_a_lying_worker_out_of_traffic(inproc: InProcessNetwork) -> None:
    proxy = await inproc.start_proxy()
    honest = [await inproc.start_worker(f"honest{i}") for i in range(2)]
    lying = await inproc.start_worker("liar", wrap=liar(0.5))
    base_url = await inproc.start_client(audit=AuditConfig(rate=0.2))
    assert inproc.pool is not None and inproc.gateway is not None
    reputation, auditor = inproc.pool.reputation, inproc.gateway.auditor
    liar_key = lying.credentials.identity.public_key
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    sent = 0
    # Bounded: at this rate the liar is caught within a few hundred answers.
    while reputation.allowed(liar_key, time.monotonic()) and sent < 400:
        await client.chat.completions.create(**chat(sent))  # type: ignore[call-overload]
        sent += 1
        if sent % 20 == 0:
            await auditor.wait_idle()
    await auditor.wait_idle()
    assert not reputation.allowed(liar_key, time.monotonic()), f"not caught in {sent}"
    assert auditor.stats.failed >= 1 and auditor.stats.reports_sent >= 1
    # The honest workers were audited too, and passed every time.
    for worker in honest:
        standing = reputation.snapshot(worker.credentials.identity.public_key, time.monotonic())
        assert standing["audits_failed"] == 0
        assert reputation.allowed(worker.credentials.identity.public_key, time.monotonic())
    # The proxy took the signed report (it weighs nothing: this client paid nothing).
    await until(lambda: proxy.reports.taken >= 1)
    report = verify_report(auditor_last_report(inproc), NETWORK)
    assert report.worker_key == liar_key and report.reason
    # From now on the liar gets no traffic.
    served = set()
    for n in range(30):
        raw = await client.chat.completions.with_raw_response.create(**chat(1000 + n))  # type: ignore[call-overload]
        served.add(raw.headers["x-cocoon-worker"])
    assert lying.credentials.key_id not in served
    stats = await _jsonstats(base_url)
    assert stats["audits"]["failed"] >= 1  # type: ignore[index]
    await client.close()


def auditor_last_report(inproc: InProcessNetwork) -> bytes:
    assert inproc.proxy is not None
    desk = inproc.proxy.reports
    assert desk.last is not None
    return desk.last


async def _jsonstats(base_url: str) -> dict[str, object]:
    url = base_url.removesuffix("/v1") + "/jsonstats"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.json()  # type: ignore[no-any-return]


async def test_the_replicated_tier_answers_what_the_honest_workers_agree_on(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    for i in range(3):
        await inproc.start_worker(f"honest{i}")
    lying = await inproc.start_worker("liar", wrap=liar(1.0))
    base_url = await inproc.start_client(audit=AuditConfig(rate=0.0))
    assert inproc.gateway is not None and inproc.pool is not None
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    plain = {"model": MODEL, "messages": [{"role": "user", "content": "replicate me"}]}
    replicated = {"x-cocoon-tier": "replicated"}
    texts = set()
    served = set()
    for _ in range(6):
        raw = await client.chat.completions.with_raw_response.create(
            **plain, seed=7, extra_headers=replicated
        )  # type: ignore[call-overload]
        texts.add(raw.parse().choices[0].message.content)
        served.add(raw.headers["x-cocoon-worker"])
    stream = await client.chat.completions.create(
        **plain, seed=7, stream=True, extra_body={"cocoon": {"tier": "replicated"}}
    )  # type: ignore[call-overload]
    texts.add("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    # The liar never agrees with anyone: every answer is the honest one.
    assert len(texts) == 1 and texts.pop()
    assert lying.credentials.key_id not in served
    await inproc.gateway.replicator.wait_idle()
    await inproc.gateway.auditor.wait_idle()
    replicas = inproc.gateway.replicator.status()
    assert replicas["agreed"] == 7 and replicas["disagreed"] == 0
    # It ran in some of them (it is one of four), lost, and was audited out.
    assert replicas["outvoted"] >= 1
    liar_key = lying.credentials.identity.public_key
    assert not inproc.pool.reputation.allowed(liar_key, time.monotonic())
    assert inproc.gateway.auditor.stats.failed >= 1
    await client.close()


async def test_replicas_that_all_differ_are_settled_by_mutual_audit(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    honest = await inproc.start_worker("honest")
    for salt in ("b", "c"):
        await inproc.start_worker(f"liar-{salt}", wrap=liar(1.0, salt=salt))
    base_url = await inproc.start_client(audit=AuditConfig(rate=0.0))
    assert inproc.gateway is not None
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        **chat(7), extra_headers={"x-cocoon-tier": "replicated"}
    )  # type: ignore[call-overload]
    # No two of the three agree; the liars score honestly as auditors, so the only
    # answer another replica's worker finds plausible is the honest one.
    assert raw.headers["x-cocoon-worker"] == honest.credentials.key_id
    assert raw.parse().choices[0].message.content
    status = inproc.gateway.replicator.status()
    assert status["mutually_audited"] == 1 and status["agreed"] == 0
    await client.close()


async def test_replicated_needs_three_workers(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    for i in range(2):
        await inproc.start_worker(f"w{i}")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            **chat(1), extra_headers={"x-cocoon-tier": "replicated"}
        )  # type: ignore[call-overload]
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "tier_unavailable"  # type: ignore[index]
    await client.close()


async def test_tiers_choose_workers_by_their_attested_claims(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("plain")
    german = await inproc.start_worker("german", tee=TeeConfig(allow_untrusted=True, region="DE"))
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    for _ in range(5):
        raw = await client.chat.completions.with_raw_response.create(
            **chat(1), extra_headers={"x-cocoon-tier": "region=de"}
        )  # type: ignore[call-overload]
        assert raw.headers["x-cocoon-worker"] == german.credentials.key_id
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(**chat(2), extra_body={"cocoon": {"tier": "tee+gpu"}})  # type: ignore[call-overload]
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "tier_unavailable"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(**chat(3), extra_headers={"x-cocoon-tier": "gold"})  # type: ignore[call-overload]
    assert bad.value.body["code"] == "invalid_tier"  # type: ignore[index]
    models = await client.models.list()
    tiers = {m.id: m.model_extra["cocoon"]["tiers"] for m in models.data}  # type: ignore[index]
    assert tiers[MODEL] == ["tee", "audited", "region=DE"]
    await client.close()
