"""The built-in engines end to end: `cocoon up` on llama.cpp and sentence-transformers.

What a new user gets from `./scripts/up`, driven with the official OpenAI SDK:
SmolLM2-135M-Instruct answers through the sealed path with its own token
counts, and all-MiniLM-L6-v2 makes embeddings whose similarities mean
something. One network (one worker, both models) serves every test here, since
loading the engines is the slow part.

SmolLM2-135M is tiny: without a system message its template adds one of its
own and the answer wanders; with "You are a helpful assistant." and greedy
decoding (temperature 0) it says "The capital of France is Paris." every time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from .conftest import UpProcess, get_json, start_up, stop_up

pytestmark = [pytest.mark.slow, pytest.mark.engine]

CHAT_MODEL = "SmolLM2-135M-Instruct"
EMBEDDINGS_MODEL = "all-MiniLM-L6-v2"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


@pytest.fixture(scope="module")
def engine_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    up = start_up(
        tmp_path_factory.mktemp("engine"), "--engine", "llama", "--workers", "1", ready_s=180
    )
    try:
        yield up
    finally:
        stop_up(up)


@pytest.fixture
def client(engine_up: UpProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=engine_up.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


def test_up_serves_both_models_by_their_file_ids(engine_up: UpProcess) -> None:
    names = sorted(model.split("@sha256:")[0] for model in engine_up.models)
    assert names == [CHAT_MODEL, EMBEDDINGS_MODEL]
    assert all("@sha256:" in model for model in engine_up.models)


def test_the_capital_of_france_is_paris(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        seed=1,
        max_tokens=32,
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 10
    assert 0 < reply.usage.completion_tokens < 32


def test_streamed_tokens_are_the_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": "Tell me a story about a boat."}],
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish_reason = None
    usage = None
    for chunk in stream:
        if chunk.choices:
            if chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            finish_reason = chunk.choices[0].finish_reason or finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None
    # Each sampled token leaves as a chunk of its own (plain English: no
    # token is half a character), so the chunks the app counted are the
    # tokens it is billed for.
    assert len(pieces) == usage.completion_tokens == 24
    assert finish_reason == "length"


def test_a_stop_sequence_stops_the_answer_before_it(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": "Count from 1 to 20."}],
        temperature=0,
        max_tokens=120,
        stop=["7"],
    )
    text = reply.choices[0].message.content or ""
    assert "6" in text
    assert "7" not in text
    assert reply.choices[0].finish_reason == "stop"


def test_a_prompt_over_the_context_window_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "sea " * 3000}],
            max_tokens=8,
        )
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in info.value.message


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_paraphrases_are_closer_than_unrelated_sentences(
    client: openai.OpenAI, engine_up: UpProcess
) -> None:
    answer = client.embeddings.create(
        model=EMBEDDINGS_MODEL,
        input=[
            "The cat sits on the mat.",
            "A cat is sitting on a mat.",
            "Stock markets fell sharply today.",
        ],
    )
    cat, paraphrase, markets = (item.embedding for item in answer.data)
    assert len(cat) == 384
    assert _cosine(cat, paraphrase) > 0.8 > 0.3 > _cosine(cat, markets)
    # The model's tokenizer: [CLS] + 7 + [SEP], [CLS] + 8 + [SEP], [CLS] + 6 + [SEP].
    assert answer.usage.prompt_tokens == 9 + 10 + 8
    # The worker billed it through the proxy like any request.
    billing = get_json(f"{engine_up.proxy_status}/jsonstats")["billing"]
    assert billing["prompt_tokens"] >= answer.usage.prompt_tokens


def test_the_data_dir_caches_the_model_ids(engine_up: UpProcess) -> None:
    cache = Path(engine_up.data_dir) / "worker1" / "model-ids.json"
    text = cache.read_text()
    assert all(model in text for model in engine_up.models)
