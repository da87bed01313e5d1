"""Whether an audited answer could have come from the model, with the request's sampling.

Sans-IO: numbers in, a `Verdict` out. The auditor's scores (`cocoon.audit.scores`)
say, for each answer token, its rank under the model, its log-probability and
the probability mass ranked above it at the request's temperature. The rules:

1. Too few tokens say nothing: an answer of fewer than `MIN_TOKENS` scored
   tokens passes ("too_short").
2. Greedy (temperature 0): the model's top token at every position, but for
   float non-determinism (another GPU, batch or kernel flips a near tie, and a
   re-tokenized answer can split a word differently). At least
   `GREEDY_MIN_AGREEMENT` of the tokens must be the top one or a near tie
   (rank at most `NEAR_TIE_RANK`, within `NEAR_TIE_NATS` of the top)
   ("not_greedy").
3. Sampled: each token must lie inside the sampler's support (top-k rank,
   top-p mass above, min-p ratio to the top token, each with a small slack),
   all but `SUPPORT_TOLERANCE` of them ("outside_support").
4. Sampled or greedy, the likelihood must be plausible. For a token sampled
   from the model at temperature T, the mass ranked above it at T is at most
   the token's probability integral transform, which is uniform on [0, 1]
   and independent from token to token (whatever top-k, top-p or min-p cut
   away, since those keep the top of the ranking). So an honest answer's
   mean `mass_above` stays below 1/2 + `PIT_Z` standard errors of a uniform
   mean; another model's tokens, filler or text written by someone else sit
   lower in the ranking and push it up ("implausible"). A mean log-probability
   under `FLOOR_LOGPROB` fails too, whatever the sampling: no sampler emits
   tokens that unlikely on average.
5. A request with repetition, frequency or presence penalties, or a logit
   bias, was sampled from a distribution the auditor did not see: rules 2 to 4
   are not applied; only rule 4's floor is ("penalised" when it passes).

Thresholds were calibrated with SmolLM2-135M on the built-in engine
(`python -m cocoon.audit.calibrate`, numbers in docs/verified-work.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cocoon.audit.scores import AnswerScores, TokenScore
from cocoon.inference import GenerationRequest

# Rule 1: fewer scored tokens cannot be judged.
MIN_TOKENS = 8
# Rule 2: a near tie that float noise may flip.
NEAR_TIE_RANK = 2
NEAR_TIE_NATS = 1.0
GREEDY_MIN_AGREEMENT = 0.9
# Rule 3: slack on each support bound (rank, probability mass, log ratio), and
# the share of tokens allowed outside it.
TOP_K_SLACK = 1
TOP_P_SLACK = 0.02
MIN_P_SLACK_NATS = 0.1
SUPPORT_TOLERANCE = 0.05
# Rule 4: standard errors above 1/2 that an honest mean mass_above may reach,
# and the mean log-probability (natural log) under which nothing passes.
PIT_Z = 4.0
FLOOR_LOGPROB = -6.0

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
    # Penalties or a logit bias reshaped the model's distribution (rule 5).
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
    # Share of tokens inside the sampler's support (greedy: top token or near tie).
    in_support: float
    # Mean log-probability of the tokens at temperature 1.
    mean_logprob: float
    # Mean probability mass ranked above the tokens, at the request's temperature.
    mean_mass_above: float
    # The most rule 4 allows this many tokens.
    max_mass_above: float


def judge(scores: AnswerScores, sampling: Sampling) -> Verdict:
    """Whether `scores` are those of an answer the model could have given with `sampling`."""
    tokens = scores.tokens
    count = len(tokens)
    if count == 0:
        return Verdict(True, "too_short", 0, 0.0, 0.0, 0.0, 0.0, 1.0)
    top1 = sum(1 for token in tokens if token.rank == 0) / count
    mean_logprob = sum(token.logprob for token in tokens) / count
    mean_mass_above = sum(token.mass_above for token in tokens) / count
    max_mass_above = 0.5 + PIT_Z * math.sqrt(1.0 / 12.0 / count)
    if sampling.greedy:
        in_support = sum(1 for token in tokens if _near_top(token)) / count
    else:
        in_support = sum(1 for token in tokens if _inside(token, sampling)) / count

    def verdict(passed: bool, reason: str) -> Verdict:
        return Verdict(
            passed,
            reason,
            count,
            top1,
            in_support,
            mean_logprob,
            mean_mass_above,
            max_mass_above,
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
    if mean_mass_above > max_mass_above:
        return verdict(False, "implausible")
    return verdict(True, "ok")


def _near_top(token: TokenScore) -> bool:
    if token.rank == 0:
        return True
    return token.rank <= NEAR_TIE_RANK and token.top_logprob - token.logprob <= NEAR_TIE_NATS


def _inside(token: TokenScore, sampling: Sampling) -> bool:
    if sampling.top_k and token.rank >= sampling.top_k + TOP_K_SLACK:
        return False
    if token.rank > 0 and token.mass_above >= sampling.top_p + TOP_P_SLACK:
        return False
    if sampling.min_p:
        # llama.cpp cuts at temperature 1, vLLM after tempering: the looser of the two.
        bound = max(1.0, sampling.temperature) * math.log(sampling.min_p)
        if token.logprob - token.top_logprob < bound - MIN_P_SLACK_NATS:
            return False
    return True


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
