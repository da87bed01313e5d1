"""A client pinned to a model root uses only workers that claim that root."""

from __future__ import annotations

import aiohttp
import openai

from .conftest import InProcessNetwork

LLAMA_A = "llama@sha256:" + "aa" * 32
LLAMA_B = "llama@sha256:" + "bb" * 32


async def test_pinned_model_is_served_only_by_the_pinned_root(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    good = await inproc.start_worker("good", models=[LLAMA_A])
    bad = await inproc.start_worker("bad", models=[LLAMA_B])
    base_url = await inproc.start_client(pinned_models={"llama": LLAMA_A})
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)

    models = {m.id for m in (await client.models.list()).data}
    assert models == {"llama", LLAMA_A}
    assert inproc.session is not None
    refused = inproc.session.verifier.refused
    assert refused[bad.credentials.key_id].startswith("model_root_not_allowed")
    assert good.credentials.key_id not in refused
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/attestation") as response:
        status = await response.json()
    assert "not a pinned root of llama" in status["refused_workers"][bad.credentials.key_id]

    for _ in range(3):  # the app asks for the bare name; only the pinned root answers
        raw = await client.chat.completions.with_raw_response.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert raw.headers["x-cocoon-worker"] == good.credentials.key_id
        assert raw.parse().model == "llama"
    assert bad.stats.requests == 0
    await client.close()
