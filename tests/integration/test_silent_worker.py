"""A worker that accepts requests and never answers (issue 16, item 4): each attempt on
it has a first-chunk deadline, past which the proxy tries the next candidate; after
a few misses in a row it is disconnected. Real sockets on 127.0.0.1, the OpenAI SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import openai
import pytest

import harness.network
from cocoon.inference import AnswerChunk, GenerationRequest
from cocoon.proxy.deadlines import DeadlineConfig, FirstChunkDeadlines
from cocoon.proxy.router import RouterConfig
from cocoon.worker.backends.synthetic import SyntheticBackend, SyntheticConfig
from harness.network import until

from .conftest import InProcessNetwork

MODEL = "synthetic-small"
# Short, so that the test runs in a second: the floor is what a silent newcomer
# costs one request when the model has fast proven workers.
FAST = DeadlineConfig(factor=4.0, floor_s=0.3, cold_s=0.5, drop_after=3)


class SilentBackend(SyntheticBackend):
    """Announces the synthetic models, takes every request, never answers."""

    async def generate(  # type: ignore[override]
        self, request: GenerationRequest
    ) -> AsyncGenerator[AnswerChunk, None]:
        await asyncio.Event().wait()
        yield AnswerChunk()


async def test_requests_move_past_a_silent_worker_within_one_deadline(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await inproc.start_proxy()
    proxy.relay.deadlines = FirstChunkDeadlines(FAST)
    await inproc.start_worker("good")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=20)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hello"}
    ]
    # The good worker has a history: a few milliseconds to its first chunk.
    await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)

    with monkeypatch.context() as patch:
        patch.setattr(harness.network, "make_backend", lambda _: SilentBackend(SyntheticConfig()))
        silent = inproc.launch_worker("silent")
    await asyncio.wait_for(silent.connected.wait(), 10)
    silent_key = silent.credentials.key_id
    await until(lambda: silent_key in proxy.router.workers)
    assert inproc.session is not None
    await inproc.session.workers(refresh=True)

    times = []
    for _ in range(10):
        started = time.monotonic()
        answer = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)
        times.append(time.monotonic() - started)
        assert answer.choices[0].message.content
    await client.close()
    # Each request took at most one deadline more than an answer takes.
    assert max(times) < FAST.floor_s + 1.0, times
    # The silent worker was tried (it ties with the good one: not above it, not never)
    # and, having missed, is left alone: each miss doubles its penalty.
    misses = proxy.relay.deadlines.misses.get(silent_key, 0)
    assert 1 <= misses < 10, misses


async def test_a_silent_worker_missing_its_deadlines_is_disconnected(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await inproc.start_proxy()
    proxy.relay.deadlines = FirstChunkDeadlines(FAST)
    # A router that forgets at once: the silent worker's penalty and estimate fade
    # before the next request, so it is probed again and again (in a real proxy the
    # probes come minutes apart, and it is dropped all the same).
    proxy.router.config = RouterConfig(
        penalty_half_life_s=1e-3, decay_half_life_s=1e-3, decay_half_life_requests=0.01
    )
    await inproc.start_worker("good")
    with monkeypatch.context() as patch:
        patch.setattr(harness.network, "make_backend", lambda _: SilentBackend(SyntheticConfig()))
        silent = inproc.launch_worker("silent")
    await asyncio.wait_for(silent.connected.wait(), 10)
    silent_key = silent.credentials.key_id
    await until(lambda: silent_key in proxy.router.workers)
    base_url = await inproc.start_client(candidates=2)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=20)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hello"}
    ]
    worker = proxy.router.workers[silent_key]
    channel = worker.channel
    started = time.monotonic()
    answered = 0
    while not channel.closed and answered < 40:
        answer = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)
        assert answer.choices[0].message.content
        answered += 1
    await client.close()
    assert channel.closed, "the silent worker was never disconnected"
    assert proxy.relay.deadlines.misses[silent_key] >= FAST.drop_after
    assert time.monotonic() - started < 20
