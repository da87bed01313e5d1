"""What an auditor returns: how likely the model finds each token of an answer.

One prefill pass over prompt + answer gives, at every answer position, the
model's distribution over the next token. An honest answer's tokens sit at the
top of it (greedy) or inside the sampler's support (sampled); another model's
answer, a cheaper quantisation or made-up text does not. The verdict
(`cocoon.audit.verdict`) reads these numbers; nothing here judges.
"""

from __future__ import annotations

import msgspec


class TokenScore(msgspec.Struct, array_like=True, frozen=True):
    """One answer token under the model, at the audited request's temperature.

    `rank`: 0 when the token is the model's most likely next token.
    `logprob`: its log-probability, natural log, at temperature 1.
    `top_logprob`: the log-probability of the most likely token (min-p reads it).
    `mass_above`: the probability, at the request's temperature (1 for greedy),
    of all tokens ranked above it: inside top-p support iff `mass_above < top_p`.
    """

    rank: int
    logprob: float
    top_logprob: float
    mass_above: float


class AnswerScores(msgspec.Struct, frozen=True, kw_only=True):
    """The scores of every answer token, in order, and how the scorer tokenised."""

    tokens: list[TokenScore]
    # The scorer's name for its tokenizer or engine ("llama.cpp", "vllm",
    # "synthetic"), for logs and reports.
    scorer: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnswerScores)


class ScoresError(ValueError):
    """Scores that do not decode."""


def pack_scores(scores: AnswerScores) -> bytes:
    """The form scores travel in (`AnswerChunk.scores`)."""
    return _encoder.encode(scores)


def unpack_scores(data: bytes) -> AnswerScores:
    """Decode packed scores; ScoresError when they are not scores."""
    try:
        return _decoder.decode(data)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise ScoresError(f"malformed scores: {exc}") from exc
