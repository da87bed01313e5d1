"""The synthetic OpenAI-compatible server, spoken to over HTTP and with the openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import msgspec
import openai
import pytest
from conftest import Upstream

from cocoon.inference import ChatMessage, GenerationRequest
from cocoon.worker.backends import SyntheticBackend


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def expected_text(request: GenerationRequest) -> str:
    return "".join([chunk.text async for chunk in SyntheticBackend().generate(request)])


def sse_events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n")
    events = body[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [event[len(b"data: ") :] for event in events]


async def test_models(upstream: Upstream, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{upstream.base_url}/models") as response:
        body = await response.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["synthetic-small"]


async def test_chat_without_streaming(upstream: Upstream, http: aiohttp.ClientSession) -> None:
    request = {"model": "synthetic-small", "messages": [{"role": "user", "content": "hi there"}]}
    async with http.post(f"{upstream.base_url}/chat/completions", json=request) as response:
        assert response.status == 200
        body = await response.json()
    choice = body["choices"][0]
    assert body["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == await expected_text(
        GenerationRequest(
            kind="chat",
            model="synthetic-small",
            messages=[ChatMessage(role="user", content="hi there")],
        )
    )
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == 2 + 3 + 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_completion_stream_events(upstream: Upstream, http: aiohttp.ClientSession) -> None:
    request = {"model": "synthetic-small", "prompt": "a b c", "max_tokens": 3, "stream": True}
    async with http.post(f"{upstream.base_url}/completions", json=request) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await response.read())
    assert events[-1] == b"[DONE]"
    chunks = [msgspec.json.decode(event) for event in events[:-1]]
    request_ = GenerationRequest(
        kind="completion", model="synthetic-small", prompt="a b c", max_tokens=3
    )
    expected = [chunk.text async for chunk in SyntheticBackend().generate(request_)]
    assert len(expected) == 3
    assert [chunk["choices"][0]["text"] for chunk in chunks[:-1]] == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in chunk for chunk in chunks)  # include_usage not asked


async def test_chat_stream_with_usage(upstream: Upstream, http: aiohttp.ClientSession) -> None:
    request = {
        "model": "synthetic-small",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 2,
    }
    async with http.post(f"{upstream.base_url}/chat/completions", json=request) as response:
        events = sse_events(await response.read())
    chunks = [msgspec.json.decode(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert chunks[-1]["usage"]["prompt_tokens"] == 1 + 3 + 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("chat/completions", b"{not json"),
        ("chat/completions", b'{"model":"synthetic-small"}'),
        ("chat/completions", b'{"model":"synthetic-small","messages":[]}'),
        ("completions", b'{"model":"synthetic-small","prompt":["a","b"]}'),
        ("completions", b'{"model":"synthetic-small","prompt":"a","max_tokens":"many"}'),
    ],
)
async def test_malformed_bodies_get_openai_errors(
    upstream: Upstream, http: aiohttp.ClientSession, path: str, body: bytes
) -> None:
    async with http.post(f"{upstream.base_url}/{path}", data=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


async def test_unknown_model_is_404(upstream: Upstream, http: aiohttp.ClientSession) -> None:
    request = {"model": "gpt-9", "prompt": "hi"}
    async with http.post(f"{upstream.base_url}/completions", json=request) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert error["code"] == "model_not_found"


async def test_openai_sdk_streams_from_it(upstream: Upstream) -> None:
    client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key="unused", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="synthetic-small",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
            seed=4,
        )
        parts: list[str] = []
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        completion = await client.completions.create(
            model="synthetic-small", prompt="hi", max_tokens=4
        )
        with pytest.raises(openai.NotFoundError):
            await client.completions.create(model="nope", prompt="hi")
    finally:
        await client.close()
    expected = await expected_text(
        GenerationRequest(
            kind="chat",
            model="synthetic-small",
            messages=[ChatMessage(role="user", content="hi")],
            seed=4,
        )
    )
    assert "".join(parts) == expected
    assert usage is not None and usage.completion_tokens == len(parts)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
