"""The openai backend against real servers on 127.0.0.1: the synthetic upstream,
and small hand-written servers for the failures it cannot produce."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from aiohttp import web
from conftest import StartUpstream, Upstream

from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from cocoon.worker.backends import (
    BackendError,
    OpenAIBackend,
    OpenAIConfig,
    SyntheticBackend,
    SyntheticConfig,
)
from harness.ports import free_port

MakeBackend = Callable[..., OpenAIBackend]


def chat_request(model: str = "synthetic-small", **fields: object) -> GenerationRequest:
    messages = [
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(role="user", content="Name three colours of the sea"),
    ]
    return GenerationRequest(kind="chat", model=model, messages=messages, **fields)  # type: ignore[arg-type]


def completion_request(model: str = "synthetic-small", **fields: object) -> GenerationRequest:
    return GenerationRequest(kind="completion", model=model, prompt="Once upon a time", **fields)  # type: ignore[arg-type]


async def collect(chunks: AsyncIterator[AnswerChunk]) -> list[AnswerChunk]:
    return [chunk async for chunk in chunks]


@pytest.mark.parametrize(
    "request_",
    [
        chat_request(),
        chat_request(seed=11, max_tokens=7, temperature=0.2, top_p=0.9),
        # Completions name max_tokens: OpenAI servers default them to 16 tokens.
        completion_request(max_tokens=40),
        completion_request(seed=5, stop=[" et"], max_tokens=64),
    ],
)
async def test_same_answer_and_usage_as_the_synthetic_backend(
    upstream: Upstream, make_openai_backend: MakeBackend, request_: GenerationRequest
) -> None:
    expected = await collect(SyntheticBackend().generate(request_))
    chunks = await collect(make_openai_backend(upstream.base_url).generate(request_))
    assert "".join(c.text for c in chunks) == "".join(c.text for c in expected)
    # The tokens of one network read come as one chunk of their text.
    assert all(c.text for c in chunks[:-1])
    assert len(chunks) - 1 <= len([c for c in expected if c.text])
    assert chunks[-1].text == ""
    assert chunks[-1].finish_reason == expected[-1].finish_reason
    assert chunks[-1].usage == expected[-1].usage
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize(
    "request_",
    [
        chat_request(stream=False, seed=3),
        chat_request(stream=False, max_tokens=5),
        completion_request(stream=False, max_tokens=40),
    ],
)
async def test_an_unstreamed_request_is_one_answer_with_the_same_text_and_usage(
    upstream: Upstream, make_openai_backend: MakeBackend, request_: GenerationRequest
) -> None:
    expected = await collect(SyntheticBackend().generate(request_))
    chunks = await collect(make_openai_backend(upstream.base_url).generate(request_))
    # One chunk: the whole text, why it ended and what it cost.
    assert len(chunks) == 1
    [whole] = chunks
    assert whole.text == "".join(c.text for c in expected)
    assert whole.finish_reason == expected[-1].finish_reason
    assert whole.usage == expected[-1].usage


def test_an_unstreamed_request_asks_upstream_for_one_answer() -> None:
    backend = OpenAIBackend(OpenAIConfig(base_url="http://127.0.0.1:1/v1", models=["m"]))
    body = msgspec.json.decode(backend.encode_body(chat_request(model="m", stream=False)))
    assert body["stream"] is False and "stream_options" not in body


async def test_length_finish_passes_through(
    upstream: Upstream, make_openai_backend: MakeBackend
) -> None:
    chunks = await collect(
        make_openai_backend(upstream.base_url).generate(completion_request(max_tokens=3))
    )
    assert 2 <= len(chunks) <= 4 and all(c.text for c in chunks[:-1])
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_upstream_model_rename(upstream: Upstream, make_openai_backend: MakeBackend) -> None:
    backend = make_openai_backend(
        upstream.base_url, models=["cocoon/small"], upstream_model="synthetic-small"
    )
    assert backend.models() == ["cocoon/small"]
    chunks = await collect(backend.generate(chat_request(model="cocoon/small")))
    assert chunks[-1].finish_reason == "stop"


async def test_many_requests_share_the_session(
    upstream: Upstream, make_openai_backend: MakeBackend
) -> None:
    backend = make_openai_backend(upstream.base_url)
    answers = await asyncio.gather(
        *(collect(backend.generate(chat_request(seed=seed))) for seed in range(50))
    )
    assert all(answer[-1].finish_reason == "stop" for answer in answers)
    assert upstream.stats.completed == 50
    assert upstream.stats.in_flight == 0


async def test_model_not_announced_is_refused_locally(
    upstream: Upstream, make_openai_backend: MakeBackend
) -> None:
    with pytest.raises(BackendError) as raised:
        await collect(make_openai_backend(upstream.base_url).generate(chat_request(model="x")))
    assert (raised.value.code, raised.value.status) == ("model_not_found", 404)
    assert upstream.stats.requests == 0


async def test_upstream_404_maps_to_model_not_found(
    upstream: Upstream, make_openai_backend: MakeBackend
) -> None:
    backend = make_openai_backend(upstream.base_url, models=["ghost"])
    with pytest.raises(BackendError) as raised:
        await collect(backend.generate(chat_request(model="ghost")))
    error = raised.value
    assert (error.code, error.status, error.retryable) == ("model_not_found", 404, False)
    assert "ghost" in error.message


async def test_upstream_400_maps_to_invalid_request(
    upstream: Upstream, make_openai_backend: MakeBackend
) -> None:
    backend = make_openai_backend(upstream.base_url)
    for request in (
        completion_request(max_tokens=-1),
        chat_request(extra={"stop": 5}),  # a pass-through field the server rejects
    ):
        with pytest.raises(BackendError) as raised:
            await collect(backend.generate(request))
        error = raised.value
        assert (error.code, error.status, error.retryable) == ("invalid_request", 400, False)


async def test_connection_refused_is_upstream_unavailable(
    make_openai_backend: MakeBackend,
) -> None:
    backend = make_openai_backend(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(BackendError) as raised:
        await collect(backend.generate(chat_request()))
    error = raised.value
    assert (error.code, error.status, error.retryable) == ("upstream_unavailable", 502, True)


async def test_closing_the_consumer_cancels_the_upstream_request(
    start_upstream: StartUpstream, make_openai_backend: MakeBackend
) -> None:
    upstream = await start_upstream(SyntheticConfig(tokens_per_second=20, default_max_tokens=1000))
    chunks = make_openai_backend(upstream.base_url).generate(chat_request())
    first = await anext(chunks)
    assert first.text
    await chunks.aclose()
    await upstream.stats.wait_until(lambda stats: stats.cancelled == 1)
    await upstream.stats.wait_until(lambda stats: stats.in_flight == 0)
    assert upstream.stats.completed == 0


async def test_cancelling_the_consumer_task_cancels_the_upstream_request(
    start_upstream: StartUpstream, make_openai_backend: MakeBackend
) -> None:
    upstream = await start_upstream(SyntheticConfig(tokens_per_second=20, default_max_tokens=1000))
    backend = make_openai_backend(upstream.base_url)
    got_text = asyncio.Event()

    async def consume() -> None:
        async for _chunk in backend.generate(completion_request()):
            got_text.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await got_text.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upstream.stats.wait_until(lambda stats: stats.cancelled == 1)
    # The backend still works afterwards.
    chunks = await collect(backend.generate(completion_request(max_tokens=2)))
    assert chunks[-1].finish_reason == "length"


# --- Servers that misbehave in ways the synthetic upstream does not. ---

RawHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve_handler() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: RawHandler) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


def raw_stream(*events: bytes) -> RawHandler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    return handler


async def test_stream_without_usage_counts_deltas(
    serve_handler: Callable[[RawHandler], Awaitable[str]], make_openai_backend: MakeBackend
) -> None:
    base_url = await serve_handler(
        raw_stream(
            b'data: {"choices":[{"delta":{"content":"Hello"}}]}\n\n',
            b'data: {"choices":[{"delta":{"content":" world"},"finish_reason":"stop"}]}\n\n',
            b"data: [DONE]\n\n",
        )
    )
    chunks = await collect(make_openai_backend(base_url).generate(chat_request()))
    # One chunk or two, as the reads came; a token counted per event either way.
    assert "".join(c.text for c in chunks) == "Hello world" and chunks[-1].text == ""
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (0, 2)


async def test_the_last_text_comes_with_the_final_chunk_when_they_arrive_together(
    serve_handler: Callable[[RawHandler], Awaitable[str]], make_openai_backend: MakeBackend
) -> None:
    """The worker seals a batch as one chunk: text that arrives with the end is batched
    with the final chunk (one sealed chunk fewer); the first text still comes alone."""
    first_taken = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[{"delta":{"content":"Hello"}}]}\n\n')
        async with asyncio.timeout(5):
            await first_taken.wait()
        await response.write(
            b'data: {"choices":[{"delta":{"content":" big"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":" world"},"finish_reason":"stop"}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n'
            b"data: [DONE]\n\n"
        )
        await response.write_eof()
        return response

    backend = make_openai_backend(await serve_handler(handler))
    batches = []
    async for batch in backend.generate_batches(chat_request(stream=True)):
        batches.append([(chunk.text, chunk.finish_reason) for chunk in batch])
        first_taken.set()
    assert batches == [
        [("Hello", None)],
        [(" big world", None), ("", "stop")],  # one read's text, as one chunk
    ]


async def test_stream_cut_short_is_an_upstream_error(
    serve_handler: Callable[[RawHandler], Awaitable[str]], make_openai_backend: MakeBackend
) -> None:
    base_url = await serve_handler(
        raw_stream(b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n')
    )
    with pytest.raises(BackendError) as raised:
        await collect(make_openai_backend(base_url).generate(chat_request()))
    assert (raised.value.code, raised.value.status) == ("upstream_error", 502)


async def test_upstream_500_is_retryable(
    serve_handler: Callable[[RawHandler], Awaitable[str]], make_openai_backend: MakeBackend
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": "CUDA out of memory", "type": "server_error", "code": None}},
            status=500,
        )

    base_url = await serve_handler(broken)
    with pytest.raises(BackendError) as raised:
        await collect(make_openai_backend(base_url).generate(chat_request()))
    error = raised.value
    assert (error.code, error.status, error.retryable) == ("upstream_unavailable", 502, True)
    assert "CUDA out of memory" in error.message


async def test_request_body_forwards_parameters(
    serve_handler: Callable[[RawHandler], Awaitable[str]], make_openai_backend: MakeBackend
) -> None:
    seen: list[dict[str, object]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        assert request.headers["Authorization"] == "Bearer sk-local"
        return await raw_stream(
            b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
        )(request)

    base_url = await serve_handler(record)
    backend = make_openai_backend(base_url, api_key="sk-local", upstream_model="real-name")
    request = chat_request(
        max_tokens=9,
        temperature=0.5,
        top_p=0.8,
        stop=["\n"],
        seed=3,
        extra={"presence_penalty": 0.1, "stream": False},
    )
    chunks = await collect(backend.generate(request))
    assert [c.text for c in chunks] == [""]
    assert seen == [
        {
            "presence_penalty": 0.1,
            "stream": True,
            "model": "real-name",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three colours of the sea"},
            ],
            "stream_options": {"include_usage": True},
            "max_tokens": 9,
            "temperature": 0.5,
            "top_p": 0.8,
            "stop": ["\n"],
            "seed": 3,
        }
    ]
