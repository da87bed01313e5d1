"""The audit verdict: greedy agreement, the sampler's support, plausibility, short answers."""

from __future__ import annotations

import math
import random

import pytest

from cocoon.audit.scores import AnswerScores, TokenScore
from cocoon.audit.verdict import MIN_TOKENS, Sampling, judge
from cocoon.inference import ChatMessage, GenerationRequest

TOP = TokenScore(rank=0, logprob=-0.1, top_logprob=-0.1, mass_above=0.0)


def scores(tokens: list[TokenScore]) -> AnswerScores:
    return AnswerScores(tokens=tokens, scorer="test")


def request(**fields: object) -> GenerationRequest:
    return GenerationRequest(kind="chat", model="m", messages=[ChatMessage("user", "hi")], **fields)  # type: ignore[arg-type]


def sample(draw: random.Random, probabilities: list[float], temperature: float) -> TokenScore:
    """A token drawn at `temperature` from `probabilities` (sorted, at T=1), as scored."""
    weights = [p ** (1.0 / temperature) for p in probabilities]
    total = sum(weights)
    rank = draw.choices(range(len(probabilities)), weights)[0]
    return TokenScore(
        rank=rank,
        logprob=math.log(probabilities[rank]),
        top_logprob=math.log(probabilities[0]),
        mass_above=sum(weights[:rank]) / total,
    )


def distribution(draw: random.Random, size: int = 50) -> list[float]:
    """A random next-token distribution, sorted, peaked or flat."""
    raw = sorted((draw.paretovariate(draw.uniform(0.5, 2.0)) for _ in range(size)), reverse=True)
    total = sum(raw)
    return [value / total for value in raw]


def test_sampling_of_a_request_takes_openai_defaults_and_extras() -> None:
    assert Sampling.of(request()) == Sampling(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0)
    assert Sampling.of(request(temperature=0.0)).greedy
    sampled = Sampling.of(request(temperature=0.7, top_p=0.9, extra={"top_k": 40, "min_p": 0.05}))
    assert sampled == Sampling(temperature=0.7, top_p=0.9, top_k=40, min_p=0.05)
    assert Sampling.of(request(extra={"top_k": -1})).top_k == 0
    assert Sampling.of(request(extra={"frequency_penalty": 0.5})).penalised
    assert Sampling.of(request(extra={"repetition_penalty": 1.1})).penalised
    assert not Sampling.of(request(extra={"repetition_penalty": 1.0})).penalised
    assert Sampling.of(request(extra={"response_format": {"type": "json_object"}})).penalised
    assert not Sampling.of(request(extra={"response_format": {"type": "text"}})).penalised


def test_a_greedy_answer_passes_with_a_few_near_ties() -> None:
    near_tie = TokenScore(rank=1, logprob=-0.8, top_logprob=-0.5, mass_above=0.55)
    tokens = [TOP] * 30 + [near_tie] * 2
    verdict = judge(scores(tokens), Sampling(temperature=0.0))
    assert verdict.passed and verdict.reason == "ok"
    assert verdict.top1 == pytest.approx(30 / 32) and verdict.in_support == 1.0


def test_a_greedy_answer_with_many_lower_tokens_is_not_greedy() -> None:
    second = TokenScore(rank=1, logprob=-1.2, top_logprob=-0.4, mass_above=0.6)
    far = TokenScore(rank=7, logprob=-3.0, top_logprob=-0.4, mass_above=0.9)
    for other in (second, far):
        verdict = judge(scores([TOP] * 24 + [other] * 8), Sampling(temperature=0.0))
        assert not verdict.passed and verdict.reason == "not_greedy", verdict


def test_short_answers_pass_unjudged() -> None:
    garbage = TokenScore(rank=900, logprob=-15.0, top_logprob=-0.1, mass_above=0.999)
    for count in (0, 1, MIN_TOKENS - 1):
        verdict = judge(scores([garbage] * count), Sampling(temperature=0.0))
        assert verdict.passed and verdict.reason == "too_short"
    assert not judge(scores([garbage] * MIN_TOKENS), Sampling(temperature=0.0)).passed


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=1.0),
        Sampling(temperature=0.7),
        Sampling(temperature=1.3),
        Sampling(temperature=1.0, top_k=5),
    ],
)
def test_honest_samples_pass(sampling: Sampling) -> None:
    draw = random.Random(7)
    failed = 0
    for _ in range(300):
        tokens = []
        for _ in range(32):
            probabilities = distribution(draw)
            if sampling.top_k:
                cut = probabilities[: sampling.top_k]
                probabilities = [p / sum(cut) for p in cut]
                token = sample(draw, probabilities, sampling.temperature)
                # Scored under the whole distribution: lower probabilities.
                token = TokenScore(
                    token.rank, token.logprob - 0.1, token.top_logprob - 0.1, token.mass_above * 0.9
                )
            else:
                token = sample(draw, probabilities, sampling.temperature)
            tokens.append(token)
        failed += not judge(scores(tokens), sampling).passed
    assert failed <= 1


def test_tokens_outside_top_k_or_min_p_are_outside_support() -> None:
    inside = TokenScore(rank=2, logprob=-1.5, top_logprob=-0.7, mass_above=0.4)
    deep = TokenScore(rank=30, logprob=-5.0, top_logprob=-0.7, mass_above=0.9)
    for sampling in (Sampling(temperature=0.8, top_k=10), Sampling(temperature=0.8, min_p=0.1)):
        assert judge(scores([inside] * 32), sampling).passed
        verdict = judge(scores([inside] * 24 + [deep] * 8), sampling)
        assert not verdict.passed and verdict.reason == "outside_support"


def test_top_p_is_held_at_temperatures_of_1_and_above() -> None:
    tail = TokenScore(rank=4, logprob=-2.5, top_logprob=-0.5, mass_above=0.95)
    tokens = [TOP] * 20 + [tail] * 12
    verdict = judge(scores(tokens), Sampling(temperature=1.0, top_p=0.8))
    assert not verdict.passed and verdict.reason == "outside_support"
    # Below 1, llama.cpp's top-p (before temperature) and vLLM's (after) disagree.
    assert judge(scores(tokens), Sampling(temperature=0.7, top_p=0.8)).reason != "outside_support"


def test_text_deep_in_the_tail_is_implausible_at_any_temperature() -> None:
    draw = random.Random(3)
    for temperature in (0.5, 1.0, 1.5):
        tokens = []
        for _ in range(40):
            probabilities = distribution(draw)
            honest = sample(draw, probabilities, temperature)
            rank = draw.randrange(10, 50)
            weights = [p ** (1.0 / temperature) for p in probabilities]
            tokens.append(
                TokenScore(
                    rank=rank,
                    logprob=math.log(probabilities[rank]),
                    top_logprob=honest.top_logprob,
                    mass_above=sum(weights[:rank]) / sum(weights),
                )
            )
        verdict = judge(scores(tokens), Sampling(temperature=temperature))
        assert not verdict.passed and verdict.reason == "implausible", verdict


def test_a_few_retokenized_words_are_forgiven() -> None:
    split = TokenScore(rank=3000, logprob=-15.0, top_logprob=-0.5, mass_above=0.99999)
    tokens = [TOP] * 30 + [split] * 2
    assert judge(scores(tokens), Sampling(temperature=0.8)).passed
    assert not judge(scores([TOP] * 24 + [split] * 8), Sampling(temperature=0.8)).passed


def test_penalised_requests_only_fail_on_the_floor() -> None:
    second = TokenScore(rank=1, logprob=-1.2, top_logprob=-0.4, mass_above=0.6)
    garbage = TokenScore(rank=900, logprob=-15.0, top_logprob=-0.1, mass_above=0.999)
    penalised = Sampling(temperature=0.0, penalised=True)
    assert judge(scores([second] * 32), penalised).reason == "penalised"
    assert judge(scores([garbage] * 32), penalised).reason == "implausible"
