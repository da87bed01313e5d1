"""Whether an audited answer could have come from the model, with the request's sampling.

Sans-IO: numbers in, a `Verdict` out. The auditor's scores (`cocoon.audit.scores`)
say, for each answer token, its rank under the model, its log-probability and
the probability mass ranked above it at the request's temperature. The rules:

1. Too few tokens say nothing: an answer of fewer than `MIN_TOKENS` scored
   tokens passes ("too_short").
2. The answer was re-tokenized by the auditor, and a word the generator split
   in an unusual way can score as one or two very unlikely tokens (about 1
   answer in 100 here); so the `1 + n // 32` tokens with the most mass above
   them are left out of rules 3 to 5 (lies change far more tokens than that).
3. Greedy (temperature 0): the model's top token at every position, but for
   float non-determinism (another GPU, batch or kernel flips a near tie). At
   least `GREEDY_MIN_AGREEMENT` of the tokens must be the top one or a near
   tie (rank at most `NEAR_TIE_RANK`, within `NEAR_TIE_NATS` of the top)
   ("not_greedy").
4. Sampled: all but `SUPPORT_TOLERANCE` of the tokens inside the sampler's
   support: rank within top-k, the mass above under top-p, the ratio to the
   top token over min-p ("outside_support"). Engines cut in different orders
   (llama.cpp: top-k, top-p, min-p at temperature 1, then temperature; vLLM:
   temperature first), so each bound is the looser of the two readings, and
   top-p is not held against a temperature under 1, where the two readings
   have no bound on each other.
5. Plausible likelihood, by the probability integral transform: for a token
   drawn from the model at temperature T, u = mass_above + V * q (V uniform
   on [0, 1], q the token's probability at T) is uniform on [0, 1] and
   independent from token to token; top-k, top-p and min-p keep the top of
   the ranking, so they only lower mass_above and q against the sampler's own
   u. q is exact at temperature 1, a lower bound below it
   (q >= p_top * (p / p_top)^(1/T)), and taken as 0 above it; a lower q again
   lowers both statistics, so neither flags an honest answer more often:
   - the mean of mass_above + q / 2 (the expected u) stays near 1/2: more
     than `PIT_Z` standard errors above ((1 - mean q^2) / 12 per token) fails;
   - the mean tail surprise E_V[-log(1 - u)] (an exponential variable's mean,
     1, variance at most 1) stays near 1: above 1 + `SURPRISE_Z` / sqrt(n)
     fails. It weighs tokens deep in the model's tail, where filler, another
     model's words or a person's phrasing sit, far more than the PIT mean.
   Both fail as "implausible", and so does a mean log-probability
   (temperature 1) under `FLOOR_LOGPROB`, whatever the sampling.
6. A request with repetition, frequency or presence penalties, a logit bias
   or a structured output format was sampled from a distribution the auditor
   did not see: rules 3 to 5
   are not applied, only the floor ("penalised" when it passes).

Thresholds were calibrated with SmolLM2-135M on the built-in engine
(`python -m cocoon.bench.audit_calibration`, numbers in docs/verified-work.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cocoon.audit.scores import AnswerScores, TokenScore
from cocoon.inference import GenerationRequest

# Rule 1: fewer scored tokens cannot be judged.
MIN_TOKENS = 8
# Rule 3: a near tie that float noise may flip, and the share of top tokens.
NEAR_TIE_RANK = 2
NEAR_TIE_NATS = 0.5
GREEDY_MIN_AGREEMENT = 0.9
# Rule 4: slack on each support bound (rank, log ratio, probability mass), and
# the share of tokens allowed outside.
TOP_K_SLACK = 1
MIN_P_SLACK_NATS = 0.1
TOP_P_SLACK = 0.02
SUPPORT_TOLERANCE = 0.1
# Rule 5: standard errors allowed above the honest mean, for each statistic,
# and the mean log-probability (natural log) under which nothing passes.
PIT_Z = 3.5
SURPRISE_Z = 3.5
FLOOR_LOGPROB = -6.0
# mass_above is clamped below 1 so that a token's surprise stays finite (13.8).
_MAX_MASS = 1.0 - 1e-6

_PENALTIES = ("repetition_penalty", "frequency_penalty", "presence_penalty", "logit_bias")


@dataclass(frozen=True)
class Sampling:
    """The sampler an answer was drawn with: temperature (0: greedy) and its cuts."""

    temperature: float = 1.0
    top_p: float = 1.0
    # 0: no top-k cut.
    top_k: int = 0
    # 0: no min-p cut.
    min_p: float = 0.0
    # Penalties, a logit bias or a grammar reshaped the model's distribution (rule 6).
    penalised: bool = False

    @classmethod
    def of(cls, request: GenerationRequest) -> Sampling:
        """The sampling of an (audited) request, with OpenAI's defaults for what it omits."""
        extra = request.extra
        top_k = _number(extra.get("top_k"))
        min_p = _number(extra.get("min_p"))
        penalised = False
        for key in _PENALTIES:
            value = extra.get(key)
            if key == "logit_bias":
                penalised = penalised or bool(value)
            elif key == "repetition_penalty":
                penalised = penalised or (_number(value) or 1.0) != 1.0
            else:
                penalised = penalised or bool(_number(value))
        # Structured output (JSON mode, a schema) samples under a grammar: the same.
        response_format = extra.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
            penalised = True
        return cls(
            temperature=1.0 if request.temperature is None else max(0.0, request.temperature),
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=int(top_k) if top_k and top_k > 0 else 0,
            min_p=min_p if min_p and min_p > 0 else 0.0,
            penalised=penalised,
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Verdict:
    """The judgement of one audit, and the numbers it rests on."""

    passed: bool
    # "ok", "too_short", "penalised" (passed); "not_greedy", "outside_support",
    # "implausible" (failed).
    reason: str
    # Scored answer tokens.
    tokens: int
    # Share of tokens that are the model's top token.
    top1: float
    # Share of tokens inside the sampler's support (greedy: top token or near
    # tie), the most surprising few left out (rule 2).
    in_support: float
    # Mean log-probability of the tokens (temperature 1), the most surprising left out.
    mean_logprob: float
    # Rule 5's statistics: the PIT mean's distance from 1/2 in standard errors,
    # and the mean tail surprise with the most it may be for this many tokens.
    pit_z: float
    surprise: float
    max_surprise: float


def judge(scores: AnswerScores, sampling: Sampling) -> Verdict:
    """Whether `scores` are those of an answer the model could have given with `sampling`."""
    tokens = scores.tokens
    count = len(tokens)
    if count == 0:
        return Verdict(True, "too_short", 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    top1 = sum(1 for token in tokens if token.rank == 0) / count
    # Rule 2: the most surprising few are left out of what follows.
    kept = sorted(tokens, key=lambda token: token.mass_above)[: count - 1 - count // 32]
    kept = kept or list(tokens)
    n = len(kept)
    if sampling.greedy:
        in_support = sum(1 for token in kept if _near_top(token)) / n
    else:
        in_support = sum(1 for token in kept if _inside(token, sampling)) / n
    mean_logprob = sum(token.logprob for token in kept) / n
    temperature = 1.0 if sampling.greedy else sampling.temperature
    probabilities = [_probability(token, temperature) for token in kept]
    surprise = sum(map(_tail_surprise, kept, probabilities)) / n
    max_surprise = 1.0 + SURPRISE_Z / math.sqrt(n)
    pit_z = _pit_z(kept, probabilities)

    def verdict(passed: bool, reason: str) -> Verdict:
        return Verdict(
            passed,
            reason,
            count,
            top1,
            in_support,
            mean_logprob,
            pit_z,
            surprise,
            max_surprise,
        )

    if count < MIN_TOKENS:
        return verdict(True, "too_short")
    if mean_logprob < FLOOR_LOGPROB:
        return verdict(False, "implausible")
    if sampling.penalised:
        return verdict(True, "penalised")
    if sampling.greedy and in_support < GREEDY_MIN_AGREEMENT:
        return verdict(False, "not_greedy")
    if not sampling.greedy and in_support < 1.0 - SUPPORT_TOLERANCE:
        return verdict(False, "outside_support")
    if surprise > max_surprise or pit_z > PIT_Z:
        return verdict(False, "implausible")
    return verdict(True, "ok")


def _probability(token: TokenScore, temperature: float) -> float:
    """The token's probability at `temperature`, or a lower bound of it (rule 5)."""
    if temperature == 1.0:
        return math.exp(token.logprob)
    if temperature < 1.0:
        # Z_T = sum p^(1/T) <= p_top^(1/T - 1), so q_T >= p_top (p / p_top)^(1/T).
        return math.exp(token.top_logprob + (token.logprob - token.top_logprob) / temperature)
    return 0.0


def _tail_surprise(token: TokenScore, q: float) -> float:
    """E[-log(1 - u)] for u uniform on [mass_above, mass_above + q]."""
    above = 1.0 - min(token.mass_above, _MAX_MASS)
    q = min(q, above)
    if q < 1e-9:
        return -math.log(above)
    below = above - q

    def antiderivative(x: float) -> float:  # of -log(x): x - x log x
        return x - x * math.log(x) if x > 0.0 else 0.0

    return (antiderivative(above) - antiderivative(below)) / q


def _pit_z(tokens: list[TokenScore], probabilities: list[float]) -> float:
    """How far above 1/2 the mean of mass_above + q / 2 is, in standard errors."""
    n = len(tokens)
    mean = sum(t.mass_above + q / 2.0 for t, q in zip(tokens, probabilities, strict=True)) / n
    squares = sum(q * q for q in probabilities) / n
    variance = max(1.0 - squares, 1e-3) / 12.0 / n
    return (mean - 0.5) / math.sqrt(variance)


def _near_top(token: TokenScore) -> bool:
    if token.rank == 0:
        return True
    return token.rank <= NEAR_TIE_RANK and token.top_logprob - token.logprob <= NEAR_TIE_NATS


def _inside(token: TokenScore, sampling: Sampling) -> bool:
    if sampling.top_k and token.rank >= sampling.top_k + TOP_K_SLACK:
        return False
    if sampling.min_p:
        # llama.cpp cuts at temperature 1, vLLM after tempering: the looser of the two.
        bound = max(1.0, sampling.temperature) * math.log(sampling.min_p)
        if token.logprob - token.top_logprob < bound - MIN_P_SLACK_NATS:
            return False
    # At T >= 1 the mass above a token at T is at most that at 1: the looser reading.
    return not (
        sampling.temperature >= 1.0
        and token.rank > 0
        and token.mass_above >= sampling.top_p + TOP_P_SLACK
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
