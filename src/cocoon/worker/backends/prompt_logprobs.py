"""Audit scores from vLLM's `prompt_logprobs`: the `openai` backend's prefill (DESIGN §11).

vLLM scores a prompt when asked `prompt_logprobs: k` (on `/v1/completions`,
in `choices[0]`; on `/v1/chat/completions`, at the top level of the answer):
one entry per prompt token, `null` for the first, else a map from token id
(a JSON string) to `{"logprob", "rank", "decoded_token"}`, holding the prompt's
own token (first) and the k most likely ones. `rank` is 1 for the most likely
token and exact over the whole vocabulary; log-probabilities are the raw
model's, at temperature 1. The audit asks for prompt + answer and reads the
entries of the answer's tokens: those at the end whose decoded text covers
the answer.

From that, a `TokenScore`'s rank, logprob and top_logprob are exact, but
`mass_above` is approximate, since only k + 1 tokens of the vocabulary are seen:

- at temperature 1 it is exact when the token ranks within the top k; below
  them it is the mass of the top k plus, for each unseen token ranked above,
  the token's own probability (a lower bound: each of them is at least as
  likely);
- at another temperature T each seen token weighs p^(1/T), the unseen above
  the token weigh its own p^(1/T) each, and the unseen mass of the vocabulary
  (1 - the seen mass) is taken as tokens as likely as the least likely seen
  one. Good to a few hundredths for the k = 20 that vLLM allows by default.

A lower `mass_above` than the truth makes the verdict more lenient, never
stricter, so an auditor on vLLM does not fail honest answers for it.
"""

from __future__ import annotations

import math

import msgspec

from cocoon.audit.scores import AnswerScores, TokenScore, pack_scores
from cocoon.inference import AnswerChunk, GenerationRequest, Usage
from cocoon.worker.backends.base import BackendError


class Logprob(msgspec.Struct):
    """One token of a prompt position, as vLLM writes it."""

    logprob: float
    # 1: the most likely token. Absent in old vLLM versions.
    rank: int | None = None
    decoded_token: str | None = None


PromptLogprobs = list[dict[str, Logprob] | None]


class PromptLogprobsError(ValueError):
    """A `prompt_logprobs` answer that does not hold the scores asked for."""


class _ScoredChoice(msgspec.Struct):
    prompt_logprobs: PromptLogprobs | None = None
    prompt_token_ids: list[int] | None = None


class _PromptUsage(msgspec.Struct):
    prompt_tokens: int = 0


class _ScoredAnswer(msgspec.Struct):
    """A scoring answer: vLLM's prompt logprobs (top level for chat, in the choice else)."""

    choices: list[_ScoredChoice] = []
    usage: _PromptUsage | None = None
    prompt_logprobs: PromptLogprobs | None = None
    prompt_token_ids: list[int] | None = None


_scored_answer_decoder = msgspec.json.Decoder(_ScoredAnswer)


def score_body(request: GenerationRequest, model: str, logprobs: int) -> dict[str, object]:
    """The JSON body that has the server score `request.answer` after the prompt."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 1,
        "temperature": 0.0,
        "stream": False,
        "prompt_logprobs": logprobs,
    }
    if request.seed is not None:
        # vLLM needs none to score; a replaying fake model (the synthetic
        # upstream) needs it to know what it would have said.
        body["seed"] = request.seed
    if request.messages:
        answer = {"role": "assistant", "content": request.answer}
        body["messages"] = [*request.messages, answer]
        # The answer is the start of the assistant's turn, as the model
        # wrote it: no end-of-turn after it, no new turn opened.
        body["add_generation_prompt"] = False
        body["continue_final_message"] = True
    else:
        body["prompt"] = request.prompt + request.answer
    return body


def scored_chunk(body: bytes, request: GenerationRequest) -> AnswerChunk:
    """The server's scoring answer as the audit's one final chunk; BackendError when it
    holds no usable prompt logprobs."""
    try:
        answer = _scored_answer_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BackendError(
            "upstream_error", f"malformed scores from the model server: {exc}"
        ) from exc
    entries, token_ids = answer.prompt_logprobs, answer.prompt_token_ids
    if entries is None and answer.choices:
        entries = answer.choices[0].prompt_logprobs
        token_ids = answer.choices[0].prompt_token_ids
    if entries is None:
        raise BackendError("upstream_error", "the model server sent no prompt_logprobs")
    temperature = request.temperature or 1.0
    try:
        scores = token_scores(entries, token_ids, request.answer, temperature)
    except PromptLogprobsError as exc:
        raise BackendError("upstream_error", f"cannot score with the model server: {exc}") from exc
    prompt_tokens = answer.usage.prompt_tokens if answer.usage else len(entries)
    return AnswerChunk(
        finish_reason="stop",
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=0),
        scores=pack_scores(AnswerScores(tokens=scores, scorer="vllm")),
    )


def answer_positions(entries: PromptLogprobs, token_ids: list[int] | None, answer: str) -> int:
    """Index of the first entry of the answer's tokens (those at the end that spell it)."""
    if not answer:
        return len(entries)
    covered = 0
    index = len(entries)
    while covered < len(answer):
        index -= 1
        if index < 1:
            raise PromptLogprobsError("the prompt's tokens do not cover the answer")
        _, own = _own(entries, token_ids, index)
        if own.decoded_token is None:
            raise PromptLogprobsError("the server does not decode prompt tokens")
        covered += len(own.decoded_token)
    return index


def token_scores(
    entries: PromptLogprobs, token_ids: list[int] | None, answer: str, temperature: float
) -> list[TokenScore]:
    """The scores of the answer's tokens, the last ones of `entries`, at `temperature`."""
    first = answer_positions(entries, token_ids, answer)
    return [score(entries, token_ids, index, temperature) for index in range(first, len(entries))]


def score(
    entries: PromptLogprobs, token_ids: list[int] | None, index: int, temperature: float
) -> TokenScore:
    """One prompt token's score from its entry."""
    seen, own = _own(entries, token_ids, index)
    if own.rank is None:
        raise PromptLogprobsError("the server does not rank prompt tokens (vLLM >= 0.6 does)")
    rank = max(0, own.rank - 1)
    # Each distinct token seen once (the prompt's own may also be among the top k).
    distinct: dict[int, float] = {}
    for entry in seen.values():
        if entry.rank is not None:
            distinct[entry.rank] = entry.logprob
    top_logprob = distinct.get(1, max(distinct.values()))
    if rank == 0:
        return TokenScore(rank, own.logprob, top_logprob, 0.0)
    inverse = 1.0 / temperature
    above_seen = [lp for r, lp in distinct.items() if r < own.rank]
    unseen_above = max(0, rank - len(above_seen))
    weight_above = sum(math.exp(lp * inverse) for lp in above_seen)
    weight_above += unseen_above * math.exp(own.logprob * inverse)
    seen_mass = sum(math.exp(lp) for lp in distinct.values())
    seen_weight = sum(math.exp(lp * inverse) for lp in distinct.values())
    least = min(distinct.values())
    unseen_mass = max(0.0, 1.0 - seen_mass - unseen_above * math.exp(own.logprob))
    total = seen_weight + unseen_above * math.exp(own.logprob * inverse)
    total += unseen_mass * math.exp(least * (inverse - 1.0))
    return TokenScore(rank, own.logprob, top_logprob, min(1.0, weight_above / total))


def _own(
    entries: PromptLogprobs, token_ids: list[int] | None, index: int
) -> tuple[dict[str, Logprob], Logprob]:
    """An entry, and the prompt's own token in it (by id when known, else vLLM's first)."""
    seen = entries[index]
    if not seen:
        raise PromptLogprobsError(f"no logprobs for prompt token {index}")
    if token_ids is not None and index < len(token_ids):
        own = seen.get(str(token_ids[index]))
        if own is None:
            raise PromptLogprobsError(f"prompt token {index} is missing from its own entry")
        return seen, own
    return seen, next(iter(seen.values()))
