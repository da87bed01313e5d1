"""POST /v1/embeddings through the sealed path: client gateway → proxy → worker and back.

The synthetic backend's vectors carry no meaning, but everything around them
is real: the input is sealed to the worker, the vectors come back in one
sealed chunk, the worker signs a receipt for the prompt tokens, the proxy
bills from it. The real model is tested in tests/e2e/test_real_engine.py.
"""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

from cocoon.config import OpenAIBackendConfig
from cocoon.worker.backends.synthetic import EMBEDDING_DIMENSIONS

from .conftest import InProcessNetwork


async def test_embeddings_come_back_sealed_with_a_receipt_and_a_bill(
    inproc: InProcessNetwork,
) -> None:
    proxy = await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    raw = await client.embeddings.with_raw_response.create(
        model="synthetic-small", input=["one two three", "four five", "one two three"]
    )
    answer = raw.parse()
    await client.close()

    assert [item.index for item in answer.data] == [0, 1, 2]
    vectors = [item.embedding for item in answer.data]
    assert all(len(v) == EMBEDDING_DIMENSIONS for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 8  # words
    request_id = raw.headers["x-request-id"]
    assert raw.headers["x-cocoon-receipt"]
    charge = proxy.ledger.charge(request_id)
    assert charge is not None
    assert (charge["prompt_tokens"], charge["completion_tokens"]) == (8, 0)


async def test_base64_and_dimensions_reach_the_worker(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    # The SDK asks for base64 by default and decodes it; ask raw to see the wire.
    raw = await client.embeddings.with_raw_response.create(
        model="synthetic-small", input="hello", dimensions=4, encoding_format="base64"
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert len(struct.unpack("<4f", base64.b64decode(encoded))) == 4
    with pytest.raises(openai.BadRequestError) as info:
        await client.embeddings.create(model="synthetic-small", input=[[1, 2, 3]])
    assert "token arrays" in info.value.message
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="no-such-model", input="x")
    await client.close()


async def test_an_openai_upstream_serves_embeddings_by_passthrough(
    inproc: InProcessNetwork,
) -> None:
    from cocoon.upstream import serve
    from cocoon.worker.backends.synthetic import SyntheticConfig

    runner, port = await serve("127.0.0.1", 0, SyntheticConfig())
    try:
        await inproc.start_proxy()
        await inproc.start_worker(
            "w",
            backend="openai",
            openai=OpenAIBackendConfig(base_url=f"http://127.0.0.1:{port}/v1"),
        )
        base_url = await inproc.start_client()
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
        answer = await client.embeddings.create(model="synthetic-small", input=["a b", "c"])
        await client.close()
    finally:
        await runner.cleanup()
    assert [len(item.embedding) for item in answer.data] == [EMBEDDING_DIMENSIONS] * 2
    assert answer.usage.prompt_tokens == 3
