"""The openai backend's audits: vLLM's prompt_logprobs, from a fake vLLM on a real socket.

The fake speaks vLLM's exact JSON (`prompt_logprobs`: null for the first prompt
token, then a map from token id, a string, to logprob, rank from 1 and decoded
token, the prompt's own token first) over a context-free toy model: the same
distribution at every position, so the expected scores are known.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web

from cocoon.audit.scores import AnswerScores, TokenScore, unpack_scores
from cocoon.audit.verdict import Sampling, judge
from cocoon.inference import ChatMessage, GenerationRequest
from cocoon.worker.backends import BackendError, OpenAIBackend
from cocoon.worker.backends.prompt_logprobs import Logprob, token_scores

# The toy model: these tokens with these probabilities at every position; the
# other 0.1 of the mass is spread over unseen tokens (rank 100 on, 0.001 each).
LIKELY = ["\nParis", " is", " nice", " the", " a", " and"]
PROBABILITIES = [0.4, 0.2, 0.1, 0.1, 0.05, 0.05]
UNSEEN_RANK, UNSEEN_PROBABILITY = 100, 0.001
TOKEN = re.compile(r"\s*\S+")


def _token_id(text: str) -> int:
    return LIKELY.index(text) if text in LIKELY else 1000 + sum(map(ord, text))


def _entry(text: str, k: int) -> dict[str, dict[str, Any]]:
    if text in LIKELY:
        rank, p = LIKELY.index(text) + 1, PROBABILITIES[LIKELY.index(text)]
    else:
        rank, p = UNSEEN_RANK, UNSEEN_PROBABILITY
    entry = {str(_token_id(text)): {"logprob": math.log(p), "rank": rank, "decoded_token": text}}
    for index in range(min(k, len(LIKELY))):
        entry.setdefault(
            str(index),
            {
                "logprob": math.log(PROBABILITIES[index]),
                "rank": index + 1,
                "decoded_token": LIKELY[index],
            },
        )
    return entry


class FakeVLLM:
    """Answers /v1/chat/completions and /v1/completions with prompt_logprobs."""

    def __init__(self, *, token_ids: bool) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.token_ids = token_ids

    def _scored(self, prompt: str, k: int) -> tuple[list[Any], list[int], dict[str, int]]:
        tokens = TOKEN.findall(prompt)
        entries: list[Any] = [None] + [_entry(token, k) for token in tokens[1:]]
        usage = {
            "prompt_tokens": len(tokens),
            "completion_tokens": 1,
            "total_tokens": len(tokens) + 1,
        }
        return entries, [_token_id(token) for token in tokens], usage

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        prompt = "".join(f"<{m['role']}>\n{m['content']}" for m in body["messages"])
        entries, ids, usage = self._scored(prompt, body["prompt_logprobs"])
        answer: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ".", "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": "length",
                    "stop_reason": None,
                }
            ],
            "usage": usage,
            "prompt_logprobs": entries,
            "kv_transfer_params": None,
        }
        if self.token_ids:
            answer["prompt_token_ids"] = ids
        return web.json_response(answer)

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        entries, ids, usage = self._scored(body["prompt"], body["prompt_logprobs"])
        choice: dict[str, Any] = {
            "index": 0,
            "text": ".",
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
            "prompt_logprobs": entries,
        }
        if self.token_ids:
            choice["prompt_token_ids"] = ids
        return web.json_response(
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
                "usage": usage,
            }
        )


@pytest.fixture
async def start_fake() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(*, token_ids: bool = True) -> tuple[FakeVLLM, str]:
        fake = FakeVLLM(token_ids=token_ids)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", fake.chat)
        app.router.add_post("/v1/completions", fake.completions)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return fake, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


def score_request(answer: str, **fields: Any) -> GenerationRequest:
    fields.setdefault("messages", [ChatMessage("user", "Capital of France?")])
    return GenerationRequest(kind="score", model="toy", answer=answer, **fields)


async def scores_of(backend: OpenAIBackend, request: GenerationRequest) -> list[TokenScore]:
    chunks = [chunk async for chunk in backend.generate(request)]
    assert len(chunks) == 1 and chunks[0].finish_reason == "stop"
    assert chunks[0].usage is not None and chunks[0].usage.completion_tokens == 0
    scores = unpack_scores(chunks[0].scores)
    assert scores.scorer == "vllm"
    return scores.tokens


@pytest.mark.parametrize("token_ids", [True, False])
async def test_chat_answers_are_scored_from_prompt_logprobs(
    start_fake: Callable[..., Any],
    make_openai_backend: Callable[..., OpenAIBackend],
    token_ids: bool,
) -> None:
    fake, url = await start_fake(token_ids=token_ids)
    backend = make_openai_backend(url, models=["toy"], scoring=True, scoring_logprobs=2)
    assert backend.scoring_models() == ["toy"]
    tokens = await scores_of(backend, score_request("Paris is nice and"))
    body = fake.bodies[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": "Paris is nice and"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["prompt_logprobs"] == 2 and body["max_tokens"] == 1 and body["stream"] is False
    assert [token.rank for token in tokens] == [0, 1, 2, 5]
    for token, p in zip(tokens, [0.4, 0.2, 0.1, 0.05], strict=True):
        assert token.logprob == pytest.approx(math.log(p))
        assert token.top_logprob == pytest.approx(math.log(0.4))
    # Exact within the top 2 and just below them; a lower bound further down
    # (three unseen tokens above " and" are counted at its own 0.05 each).
    assert [token.mass_above for token in tokens[:3]] == pytest.approx([0.0, 0.4, 0.6])
    assert tokens[3].mass_above == pytest.approx(0.75)
    assert tokens[3].mass_above <= 0.85


async def test_completion_answers_and_other_temperatures(
    start_fake: Callable[..., Any], make_openai_backend: Callable[..., OpenAIBackend]
) -> None:
    fake, url = await start_fake()
    backend = make_openai_backend(url, models=["toy"], scoring=True)
    request = score_request(" is nice zebra", messages=[], prompt="Say:\nParis", temperature=0.5)
    tokens = await scores_of(backend, request)
    assert fake.bodies[-1]["prompt"] == "Say:\nParis is nice zebra"
    assert [token.rank for token in tokens] == [1, 2, 99]
    # At T=0.5 the seen tokens weigh p^2; the unseen 0.1 is taken as tokens of
    # the least likely seen one's 0.05 (weighing 0.05^2 each).
    total = sum(p * p for p in PROBABILITIES) + 0.1 * 0.05
    assert tokens[0].mass_above == pytest.approx(0.16 / total)
    assert tokens[1].mass_above == pytest.approx(0.20 / total)
    assert tokens[2].mass_above > 0.99


async def test_scoring_off_refuses_audits(
    start_fake: Callable[..., Any], make_openai_backend: Callable[..., OpenAIBackend]
) -> None:
    fake, url = await start_fake()
    backend = make_openai_backend(url, models=["toy"])
    assert backend.scoring_models() == []
    with pytest.raises(BackendError) as refused:
        await scores_of(backend, score_request("Paris"))
    assert refused.value.code == "unsupported" and refused.value.status == 400
    assert fake.bodies == []


def test_an_answer_the_prompt_tokens_do_not_spell_is_an_error() -> None:
    entries = [None, {"5": Logprob(-1.0, 1, "Hi")}]
    with pytest.raises(ValueError, match="cover"):
        token_scores(entries, None, "a much longer answer", 1.0)
    assert token_scores(entries, None, "", 1.0) == []
    undecoded = [None, {"5": Logprob(-1.0, 1, None)}]
    with pytest.raises(ValueError, match="decode"):
        token_scores(undecoded, None, "Hi", 1.0)
    assert msgspec.json.decode(b'{"logprob": -0.5}', type=Logprob).rank is None


async def test_workers_on_the_synthetic_upstream_can_audit(
    upstream: Any, make_openai_backend: Callable[..., OpenAIBackend]
) -> None:
    backend = make_openai_backend(upstream.base_url, scoring=True)
    question = GenerationRequest(
        kind="chat",
        model="synthetic-small",
        messages=[ChatMessage("user", "Tell me something.")],
        seed=9,
        max_tokens=20,
        stream=False,
    )
    answer = "".join([chunk.text async for chunk in backend.generate(question)])
    audit = msgspec.structs.replace(question, kind="score", answer=answer)
    honest = await scores_of(backend, audit)
    assert len(honest) == len(answer.split()) == 20
    assert all(token.rank == 0 for token in honest)
    assert judge(AnswerScores(tokens=honest), Sampling.of(question)).passed
    other = "".join(
        [chunk.text async for chunk in backend.generate(msgspec.structs.replace(question, seed=10))]
    )
    lie = await scores_of(backend, msgspec.structs.replace(audit, answer=other))
    assert sum(token.rank > 0 for token in lie) > 15
    assert all(token.mass_above > 0.9 for token in lie if token.rank > 0)
    verdict = judge(AnswerScores(tokens=lie), Sampling.of(question))
    assert not verdict.passed and verdict.reason == "implausible"
