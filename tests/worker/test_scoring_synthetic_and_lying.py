"""Audit scoring by the synthetic backend, the lying wrapper, and routing of audits."""

from __future__ import annotations

import msgspec
import pytest

from cocoon.audit.scores import AnswerScores, unpack_scores
from cocoon.audit.verdict import Sampling, judge
from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from cocoon.worker.backends import BackendError, RoutedBackend, SyntheticBackend
from cocoon.worker.backends.base import Backend
from cocoon.worker.backends.lying import LyingBackend, LyingConfig, lies_to
from cocoon.worker.backends.synthetic import MATCH, MISS, SyntheticConfig


def chat(question: str, **fields: object) -> GenerationRequest:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", question)]
    return GenerationRequest(kind="chat", model="synthetic-small", messages=messages, **fields)  # type: ignore[arg-type]


async def answer(backend: Backend, request: GenerationRequest) -> tuple[str, AnswerChunk]:
    texts, last = [], None
    async for chunk in backend.generate(request):
        texts.append(chunk.text)
        last = chunk
    assert last is not None
    return "".join(texts), last


async def audit(backend: Backend, request: GenerationRequest, text: str) -> AnswerScores:
    scoring = msgspec.structs.replace(request, kind="score", answer=text)
    chunks = [chunk async for chunk in backend.generate(scoring)]
    assert len(chunks) == 1
    assert chunks[0].finish_reason == "stop"
    return unpack_scores(chunks[0].scores)


async def test_synthetic_scores_its_own_answer_as_certain() -> None:
    backend = SyntheticBackend()
    assert backend.scoring_models() == ["synthetic-small"]
    for request in (chat("hello", seed=3), chat("hello", max_tokens=10, temperature=0.0)):
        text, _ = await answer(backend, request)
        scores = await audit(backend, request, text)
        assert scores.scorer == "synthetic"
        assert scores.tokens == [MATCH] * len(text.split())
        assert judge(scores, Sampling.of(request)).passed


async def test_synthetic_scoring_bills_the_prefill_as_prompt_tokens() -> None:
    backend = SyntheticBackend()
    request = chat("one two three")
    text, last = await answer(backend, request)
    scoring = msgspec.structs.replace(request, kind="score", answer=text)
    [chunk] = [chunk async for chunk in backend.generate(scoring)]
    assert last.usage is not None and chunk.usage is not None
    assert chunk.usage.prompt_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert chunk.usage.completion_tokens == 0


async def test_synthetic_scores_other_words_as_misses() -> None:
    backend = SyntheticBackend()
    request = chat("hello", seed=3)
    text, _ = await answer(backend, request)
    other, _ = await answer(backend, chat("hello", seed=4))
    scores = await audit(backend, request, other)
    misses = sum(token == MISS for token in scores.tokens)
    assert misses > 0.8 * len(scores.tokens)
    verdict = judge(scores, Sampling.of(request))
    assert not verdict.passed and verdict.reason == "implausible"
    # One changed word is a miss at its place only.
    words = text.split()
    words[3] = "zebra"
    scores = await audit(backend, request, " ".join(words))
    assert [i for i, token in enumerate(scores.tokens) if token == MISS] == [3]


@pytest.mark.parametrize("mode", ["other_model", "padded"])
async def test_a_lying_worker_fails_its_audits_and_an_honest_one_passes(mode: str) -> None:
    honest = SyntheticBackend()
    liar = LyingBackend(SyntheticBackend(), LyingConfig(lie_rate=1.0, lie_mode=mode))  # type: ignore[arg-type]
    for index in range(20):
        request = chat(f"question {index}", seed=index)
        true_text, true_last = await answer(honest, request)
        lie, last = await answer(liar, request)
        assert lie != true_text
        # Billed as if honest.
        assert last.usage == true_last.usage and last.finish_reason == true_last.finish_reason
        if mode == "padded":
            assert lie.startswith(true_text[: len(true_text) // 4])
        verdict = judge(await audit(honest, request, lie), Sampling.of(request))
        assert not verdict.passed, (mode, verdict)
    assert liar.lies == liar.requests == 20


async def test_the_lie_rate_is_the_configured_share_and_fixed_per_request() -> None:
    config = LyingConfig(lie_rate=0.25)
    requests = [chat(f"question {index}") for index in range(2000)]
    lied = [lies_to(request, config.lie_rate) for request in requests]
    assert 0.22 < sum(lied) / len(lied) < 0.28
    assert lied == [lies_to(request, config.lie_rate) for request in requests]
    assert lied != [lies_to(request, config.lie_rate, "other salt") for request in requests]
    assert not any(lies_to(request, 0.0) for request in requests)
    assert all(lies_to(request, 1.0) for request in requests)

    liar = LyingBackend(SyntheticBackend(), config)
    honest = SyntheticBackend()
    for request in requests[:200]:
        lie, _ = await answer(liar, request)
        assert (lie != (await answer(honest, request))[0]) == lies_to(request, 0.25)
    assert liar.lies == sum(lied[:200])


async def test_a_liar_scores_honestly_and_passes_embeddings_through() -> None:
    liar = LyingBackend(SyntheticBackend(), LyingConfig(lie_rate=1.0))
    request = chat("hello")
    text, _ = await answer(SyntheticBackend(), request)
    scores = await audit(liar, request, text)
    assert all(token == MATCH for token in scores.tokens)
    embedding = GenerationRequest(kind="embedding", model="synthetic-small", input=["a"])
    assert len((await answer(liar, embedding))[1].embeddings) == 1
    assert liar.requests == 0 and liar.scoring_models() == ["synthetic-small"]


def test_a_lie_rate_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="lie_rate"):
        LyingConfig(lie_rate=1.5)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"lie_rate": 0.1, "lie_mode": "shouting"}, LyingConfig)


class _NoScoring(SyntheticBackend):
    def scoring_models(self) -> list[str]:
        return []


async def test_routed_audits_go_to_a_backend_that_can_score() -> None:
    first = _NoScoring(SyntheticConfig(models=["a"]))
    second = SyntheticBackend(SyntheticConfig(models=["a", "b"]))
    routed = RoutedBackend([first, second])
    assert routed.scoring_models() == ["a", "b"]
    request = GenerationRequest(kind="chat", model="a", messages=[ChatMessage("user", "hi")])
    text, _ = await answer(routed, request)
    scores = await audit(routed, request, text)
    assert all(token == MATCH for token in scores.tokens)

    only = RoutedBackend([_NoScoring(SyntheticConfig(models=["a"]))])
    assert only.scoring_models() == []
    with pytest.raises(BackendError) as refused:
        await audit(only, request, text)
    assert refused.value.code == "unsupported" and refused.value.status == 400
