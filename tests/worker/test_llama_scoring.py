"""Audits on the built-in engine: SmolLM2-135M scores its own answers and others'."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest

from cocoon.audit.scores import AnswerScores, unpack_scores
from cocoon.audit.verdict import Sampling, judge
from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from cocoon.worker.backends import BackendError
from cocoon.worker.backends.llama import LlamaBackend, LlamaConfig

pytestmark = pytest.mark.engine

QUESTION = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "Explain why the sky is blue."),
]
UNRELATED = (
    "Lorem ipsum dolor sit amet: the stock market closed higher on Tuesday as investors"
    " weighed quarterly earnings from technology companies and fresh data on inflation."
)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaBackend]:
    cache = tmp_path_factory.mktemp("llama") / "model-ids.json"
    # One thread each: on a shared machine spare llama.cpp threads spin.
    backend = LlamaBackend(
        LlamaConfig(threads=1, batch_threads=1, max_queue=4, id_cache=str(cache))
    )
    yield backend
    asyncio.run(backend.aclose())


async def generate(llama: LlamaBackend, request: GenerationRequest) -> tuple[str, AnswerChunk]:
    texts, last = [], None
    async for chunk in llama.generate(request):
        texts.append(chunk.text)
        last = chunk
    assert last is not None
    return "".join(texts), last


async def score(llama: LlamaBackend, request: GenerationRequest, answer: str) -> AnswerChunk:
    audit = msgspec.structs.replace(request, kind="score", answer=answer)
    chunks = [chunk async for chunk in llama.generate(audit)]
    assert len(chunks) == 1 and chunks[0].finish_reason == "stop"
    return chunks[0]


def chat(llama: LlamaBackend, **fields: object) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        model=llama.models()[0],
        messages=QUESTION,
        max_tokens=48,
        **fields,  # type: ignore[arg-type]
    )


async def test_the_engine_scores_its_own_greedy_answer_as_greedy(llama: LlamaBackend) -> None:
    assert llama.scoring_models() == llama.models()
    request = chat(llama, temperature=0.0)
    answer, last = await generate(llama, request)
    chunk = await score(llama, request, answer)
    scores = unpack_scores(chunk.scores)
    assert scores.scorer == "llama.cpp"
    assert last.usage is not None and chunk.usage is not None
    # Every token prefilled is billed as prompt; the answer's tokens, each scored.
    assert len(scores.tokens) == last.usage.completion_tokens
    assert chunk.usage.prompt_tokens == last.usage.prompt_tokens + len(scores.tokens)
    assert chunk.usage.completion_tokens == 0
    verdict = judge(scores, Sampling.of(request))
    assert verdict.passed and verdict.reason == "ok", verdict
    assert verdict.top1 > 0.9


async def test_its_sampled_answer_passes_and_unrelated_text_fails(llama: LlamaBackend) -> None:
    request = chat(llama, temperature=0.8, seed=5)
    answer, _ = await generate(llama, request)
    verdict = judge(
        unpack_scores((await score(llama, request, answer)).scores), Sampling.of(request)
    )
    assert verdict.passed, verdict
    for sampling in (request, chat(llama, temperature=0.0)):
        scores = unpack_scores((await score(llama, sampling, UNRELATED)).scores)
        verdict = judge(scores, Sampling.of(sampling))
        assert not verdict.passed, verdict


async def test_scoring_leaves_generation_as_it_was(llama: LlamaBackend) -> None:
    request = chat(llama, temperature=0.0)
    before, _ = await generate(llama, request)
    await score(llama, request, UNRELATED)
    await score(llama, msgspec.structs.replace(request, messages=[], prompt="Once"), "upon a time")
    after, _ = await generate(llama, request)
    assert after == before


async def test_completion_prompts_are_scored_raw_and_long_ones_refused(llama: LlamaBackend) -> None:
    request = GenerationRequest(
        kind="completion", model=llama.models()[0], prompt="The capital of France is", max_tokens=8
    )
    answer, _ = await generate(llama, msgspec.structs.replace(request, temperature=0.0))
    scores = unpack_scores((await score(llama, request, answer)).scores)
    assert scores.tokens and scores.tokens[0].rank == 0
    assert judge(AnswerScores(tokens=[]), Sampling.of(request)).reason == "too_short"
    with pytest.raises(BackendError) as refused:
        await score(llama, request, "word " * 3000)
    assert refused.value.code == "context_length_exceeded"
