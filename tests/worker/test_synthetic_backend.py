"""The synthetic backend: deterministic words, token counts, limits, stops, pacing."""

from __future__ import annotations

import asyncio

import pytest

from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from cocoon.worker.backends import BackendError, SyntheticBackend, SyntheticConfig
from cocoon.worker.backends.synthetic import CHAT_REPLY_PRIMER_TOKENS, CHAT_TOKENS_PER_MESSAGE


def completion(prompt: str = "tell me a story", **fields: object) -> GenerationRequest:
    return GenerationRequest(kind="completion", model="synthetic-small", prompt=prompt, **fields)  # type: ignore[arg-type]


def chat(*contents: str, **fields: object) -> GenerationRequest:
    messages = [ChatMessage(role="user", content=content) for content in contents]
    return GenerationRequest(kind="chat", model="synthetic-small", messages=messages, **fields)  # type: ignore[arg-type]


async def collect(backend: SyntheticBackend, request: GenerationRequest) -> list[AnswerChunk]:
    return [chunk async for chunk in backend.generate(request)]


def text_of(chunks: list[AnswerChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


async def test_same_request_same_text() -> None:
    backend = SyntheticBackend()
    for request in (completion(seed=7), chat("hello there", seed=7), completion()):
        first, second = await collect(backend, request), await collect(backend, request)
        assert first == second
        assert text_of(first)


async def test_seed_and_prompt_change_the_text() -> None:
    backend = SyntheticBackend()
    texts = {text_of(await collect(backend, completion(seed=seed))) for seed in range(5)}
    texts.add(text_of(await collect(backend, completion("another prompt"))))
    assert len(texts) == 6


async def test_one_word_per_chunk_and_last_chunk_carries_usage() -> None:
    backend = SyntheticBackend()
    chunks = await collect(backend, completion("one two  three\nfour"))
    assert all(chunk.usage is None and chunk.finish_reason is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage is not None
    assert last.usage.prompt_tokens == 4
    assert last.usage.completion_tokens == len(chunks)
    assert " " not in chunks[0].text
    assert all(chunk.text.startswith(" ") and chunk.text.count(" ") == 1 for chunk in chunks[1:])
    assert len(text_of(chunks).split()) == len(chunks)


async def test_natural_length_lies_between_half_and_full_default() -> None:
    backend = SyntheticBackend(SyntheticConfig(default_max_tokens=40))
    for seed in range(20):
        chunks = await collect(backend, completion(seed=seed))
        assert 20 <= len(chunks) <= 40
        assert chunks[-1].finish_reason == "stop"


async def test_chat_prompt_tokens_include_template_overhead() -> None:
    backend = SyntheticBackend()
    request = GenerationRequest(
        kind="chat",
        model="synthetic-small",
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content=[{"type": "text", "text": "what is TON"}]),
            ChatMessage(role="assistant", content=None),
        ],
    )
    usage = (await collect(backend, request))[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == 5 + 3 * CHAT_TOKENS_PER_MESSAGE + CHAT_REPLY_PRIMER_TOKENS


async def test_max_tokens_cuts_with_length() -> None:
    backend = SyntheticBackend()  # natural length is at least 32 words
    full = await collect(backend, completion(seed=1))
    cut = await collect(backend, completion(seed=1, max_tokens=5))
    assert len(cut) == 5
    assert cut[-1].finish_reason == "length"
    assert cut[-1].usage is not None and cut[-1].usage.completion_tokens == 5
    assert text_of(full).startswith(text_of(cut))


async def test_max_tokens_above_natural_length_stops_naturally() -> None:
    backend = SyntheticBackend()
    chunks = await collect(backend, completion(max_tokens=1000))
    assert chunks == await collect(backend, completion())
    assert chunks[-1].finish_reason == "stop"


async def test_zero_max_tokens_yields_only_the_final_chunk() -> None:
    chunks = await collect(SyntheticBackend(), completion(max_tokens=0))
    assert len(chunks) == 1
    assert chunks[0].text == "" and chunks[0].finish_reason == "length"
    assert chunks[0].usage is not None and chunks[0].usage.completion_tokens == 0


async def test_stop_sequences_end_the_text_before_them() -> None:
    backend = SyntheticBackend()
    chunks = await collect(backend, completion(seed=3))
    full = text_of(chunks)
    # One stop at a word boundary, one spanning two tokens, one that never occurs.
    stops = [chunks[6].text, chunks[3].text[-2:] + chunks[4].text[:3], "never-said"]
    for stop in stops[:2]:
        cut = await collect(backend, completion(seed=3, stop=[stop, "never-said"]))
        assert text_of(cut) == full[: full.index(stop)]
        assert cut[-1].finish_reason == "stop"
        assert cut[-1].usage is not None and cut[-1].usage.completion_tokens == len(
            [chunk for chunk in cut if chunk.text]
        )
    assert await collect(backend, completion(seed=3, stop=stops[2:])) == chunks


async def test_stop_at_the_very_start_gives_an_empty_answer() -> None:
    backend = SyntheticBackend()
    first_word = (await collect(backend, completion()))[0].text
    chunks = await collect(backend, completion(stop=[first_word]))
    assert [chunk.text for chunk in chunks] == [""]
    assert chunks[0].finish_reason == "stop"


async def test_unknown_model_is_refused() -> None:
    request = GenerationRequest(kind="completion", model="gpt-9", prompt="hi")
    with pytest.raises(BackendError) as raised:
        await collect(SyntheticBackend(), request)
    assert raised.value.code == "model_not_found"
    assert raised.value.status == 404


async def test_tokens_are_paced_at_the_configured_rate() -> None:
    backend = SyntheticBackend(SyntheticConfig(tokens_per_second=200))
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks = await collect(backend, completion(max_tokens=20))
    elapsed = loop.time() - started
    assert len(chunks) == 20
    # Token i is due at i/200 s: the 20th comes 19/200 = 0.095 s after the first.
    assert elapsed >= 0.09


async def test_first_token_delay() -> None:
    backend = SyntheticBackend(SyntheticConfig(first_token_delay_ms=50))
    loop = asyncio.get_running_loop()
    started = loop.time()
    agen = backend.generate(completion())
    await anext(agen)
    assert loop.time() - started >= 0.045
    await agen.aclose()


async def test_full_speed_stream_lets_other_tasks_run() -> None:
    backend = SyntheticBackend(SyntheticConfig(default_max_tokens=2000))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    chunks = await collect(backend, completion())
    task.cancel()
    assert len(chunks) >= 1000
    assert ticks > 10
