"""Which workers a request is sealed to: its trust tier, reputation, load.

A request is sealed to up to k candidates; the proxy runs it on one of them.
The client alone decides who may be a candidate, since only it verified the
workers and only it sees answers (DESIGN §11):

- the trust tier: GPU evidence in the attested claims (`tee+gpu`), the
  region the claims name (`region=XX`);
- reputation: a worker whose score fell below the threshold gets no traffic
  until it recovers;
- features: a request with tools, a response format or logprobs goes only to
  workers that announced them for the model, and is refused (400, naming
  what is missing) when none did: never sent where they would be dropped;
- an audit or a replica names its workers outright (`Selection.only`).

Among the eligible, the order is random, weighted by free capacity and
reputation: the idle and the reputable come first more often, nobody eligible
is starved. Sans-IO.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from ..audit.reputation import Reputation
from ..registry.tiers import Tier
from .directory import VerifiedWorker, features_of
from .errors import ClientError

# The least weight a worker keeps in the random order, however loaded or doubted.
_MIN_WEIGHT = 0.05


@dataclass(frozen=True)
class Selection:
    """What a request asks of its workers."""

    tier: Tier = field(default_factory=Tier)
    # Exactly these workers (raw keys): an audit's auditor, a replica's worker.
    only: frozenset[bytes] | None = None
    exclude: frozenset[bytes] = frozenset()
    # What the answer needs of the model's worker (agent_api.controls: "tools", ...).
    features: frozenset[str] = frozenset()


PLAIN = Selection()


def tier_refusal(worker: VerifiedWorker, tier: Tier) -> str | None:
    """Why ``worker`` cannot serve a request of ``tier``, or None."""
    if tier.gpu and not worker.gpu_evidence:
        return "no GPU evidence in its attested claims"
    if tier.region and worker.region != tier.region:
        return f"its attested region is {worker.region or 'not stated'}, not {tier.region}"
    return None


def choose(
    workers: list[VerifiedWorker],
    model: str,
    max_coefficient_milli: int,
    k: int,
    selection: Selection = PLAIN,
    reputation: Reputation | None = None,
    rng: random.Random | None = None,
    now: float | None = None,
) -> list[VerifiedWorker]:
    """Up to k candidates for a request; ClientError naming why when there are none.

    ``now``: the reputation's clock (``time.monotonic()`` unless given)."""
    now = time.monotonic() if now is None else now
    serving = [w for w in workers if model in w.models]
    if selection.only is not None:
        serving = [w for w in serving if w.public_key in selection.only]
    serving = [w for w in serving if w.public_key not in selection.exclude]
    if selection.features:
        able = [w for w in serving if selection.features <= features_of(w, model)]
        if serving and not able:
            offered = set().union(*(features_of(w, model) for w in serving))
            missing = ", ".join(sorted(selection.features - offered)) or "them together"
            # Not retryable, and a 400: no worker of the model can do it, now or on retry.
            raise ClientError(
                "unsupported_feature",
                f"no worker of `{model}` supports {missing} (its workers offer:"
                f" {', '.join(sorted(offered)) or 'none of tools, response_format, logprobs'})",
            )
        serving = able
    priced = [w for w in serving if w.coefficient_milli <= max_coefficient_milli]
    if serving and not priced:
        raise ClientError("no_capacity", "no worker of this model is within max_coefficient", True)
    in_tier = [w for w in priced if tier_refusal(w, selection.tier) is None]
    if priced and not in_tier:
        reasons = sorted({r for w in priced if (r := tier_refusal(w, selection.tier))})
        raise ClientError(
            "tier_unavailable",
            f"no worker of `{model}` serves the tier {selection.tier} now: {'; '.join(reasons)}",
            True,
        )
    trusted = in_tier
    if reputation is not None:
        trusted = [w for w in in_tier if reputation.allowed(w.public_key, now)]
        if in_tier and not trusted:
            raise ClientError(
                "reputation_too_low",
                f"every worker of `{model}` that could serve it has a reputation below "
                f"{reputation.threshold} (failed audits, errors or timeouts)",
                True,
            )
    if not trusted:
        raise ClientError("no_capacity", "no worker of this model is within max_coefficient", True)
    pick = rng or random

    def weight(w: VerifiedWorker) -> float:
        free = 1.0 - min(w.active, w.max_active_requests) / max(1, w.max_active_requests)
        score = reputation.score(w.public_key, now) if reputation is not None else 0.5
        return max(free, _MIN_WEIGHT) * max(score, _MIN_WEIGHT)

    # A weighted random order (Efraimidis-Spirakis): the idle and the reputable
    # come first more often, but nobody eligible is starved of traffic.
    order = sorted(trusted, key=lambda w: pick.random() ** (1.0 / weight(w)), reverse=True)
    return order[:k]
