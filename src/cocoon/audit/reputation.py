"""Per-worker reputation: what audits, reports, errors and timeouts say of a worker.

Sans-IO and clocked by the caller. A worker's standing is two decaying weights,
good and bad evidence, over a neutral prior; its score is
``(good + prior) / (good + bad + 2 * prior)``, in [0, 1], 0.5 for a newcomer.

- A passed audit adds ``AUDIT_PASS`` good; a failed one ``AUDIT_FAIL`` bad,
  times the evidence's weight (1 for this node's own audits; a report from
  someone else weighs what its reporter paid that worker, so a client that
  paid nothing cannot smear anyone).
- Every answer adds a little good; an error or a timeout a little bad.
- Both weights halve every ``half_life_s``: old evidence fades, and a worker
  below the threshold, which gets no traffic, drifts back to neutral and is
  tried again (it recovers, or fails its next audit).
- A newcomer (fewer than ``NEW_AUDITS`` audits) starts neutral and is audited
  more (:meth:`Reputation.audit_boost`).

One failed audit drops a newcomer below the default threshold; a worker with a
history of passed audits (a dozen or more) survives a rare false positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AUDIT_PASS = 1.0
# A failed audit weighs as much as 20 passes: the verdict flagged none of 1,052 honest
# audits (docs/verified-work.md), so a failure is strong evidence; at this weight a
# worker lying in more than about 10 % of its answers ends below the threshold however
# many answers it gets right, while an honest one (at most 0.3 % false positives) stays
# near 0.94.
AUDIT_FAIL = 20.0
ANSWERED = 0.02
ERROR = 0.25
TIMEOUT = 0.5
PRIOR = 2.0
# Audits a worker must pass before it is audited at the normal rate.
NEW_AUDITS = 5
NEW_AUDIT_BOOST = 10.0

DEFAULT_THRESHOLD = 0.3
DEFAULT_HALF_LIFE_S = 1800.0


@dataclass
class Standing:
    """What is known of one worker."""

    good: float = 0.0
    bad: float = 0.0
    at: float = 0.0  # when good and bad were last decayed
    answers: int = 0
    errors: int = 0
    timeouts: int = 0
    audits_passed: int = 0
    audits_failed: int = 0
    reports: int = 0  # failed audits learned from others' reports
    first_seen: float = 0.0
    last_reason: str = ""
    reporters: set[bytes] = field(default_factory=set)

    def score(self) -> float:
        return (self.good + PRIOR) / (self.good + self.bad + 2 * PRIOR)


class Reputation:
    """Standings of every worker seen, keyed by the worker's raw Ed25519 key."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        max_workers: int = 100_000,
    ) -> None:
        if not 0.0 <= threshold < 0.5:
            # At 0.5 or above a newcomer would start excluded.
            raise ValueError("the reputation threshold must be in [0, 0.5)")
        if half_life_s <= 0:
            raise ValueError("the reputation half-life must be positive")
        self.threshold = threshold
        self.half_life_s = half_life_s
        self.max_workers = max_workers
        self._standings: dict[bytes, Standing] = {}

    def _at(self, key: bytes, now: float) -> Standing:
        standing = self._standings.get(key)
        if standing is None:
            if len(self._standings) >= self.max_workers:
                # Forget the one that has been quiet longest: it is neutral again anyway.
                oldest = min(self._standings, key=lambda k: self._standings[k].at)
                del self._standings[oldest]
            standing = Standing(at=now, first_seen=now)
            self._standings[key] = standing
        elif now > standing.at:
            factor = math.pow(0.5, (now - standing.at) / self.half_life_s)
            standing.good *= factor
            standing.bad *= factor
            standing.at = now
        return standing

    # -- evidence -------------------------------------------------------------

    def answered(self, key: bytes, now: float) -> None:
        standing = self._at(key, now)
        standing.answers += 1
        standing.good += ANSWERED

    def error(self, key: bytes, now: float, reason: str = "error") -> None:
        standing = self._at(key, now)
        standing.errors += 1
        standing.bad += ERROR
        standing.last_reason = reason

    def timeout(self, key: bytes, now: float) -> None:
        standing = self._at(key, now)
        standing.timeouts += 1
        standing.bad += TIMEOUT
        standing.last_reason = "timeout"

    def audit_passed(self, key: bytes, now: float) -> None:
        standing = self._at(key, now)
        standing.audits_passed += 1
        standing.good += AUDIT_PASS

    def audit_failed(
        self, key: bytes, now: float, *, weight: float = 1.0, reason: str = "audit_failed"
    ) -> None:
        """A failed audit of this node's own, or (weight < 1) one a report tells of."""
        standing = self._at(key, now)
        standing.audits_failed += 1
        standing.bad += AUDIT_FAIL * max(0.0, min(1.0, weight))
        standing.last_reason = reason

    def reported(self, key: bytes, reporter: bytes, now: float, *, weight: float) -> None:
        """A failed audit another node reports, weighted by what its reporter paid."""
        standing = self._at(key, now)
        standing.reports += 1
        standing.reporters.add(reporter)
        standing.bad += AUDIT_FAIL * max(0.0, min(1.0, weight))
        standing.last_reason = "reported"

    # -- reading --------------------------------------------------------------

    def score(self, key: bytes, now: float) -> float:
        standing = self._standings.get(key)
        if standing is None:
            return 0.5
        return self._at(key, now).score()

    def allowed(self, key: bytes, now: float) -> bool:
        """Whether the worker may get traffic (its score is not below the threshold)."""
        return self.score(key, now) >= self.threshold

    def audit_boost(self, key: bytes) -> float:
        """How much more often than the base rate to audit this worker's answers."""
        standing = self._standings.get(key)
        passed = standing.audits_passed if standing is not None else 0
        return NEW_AUDIT_BOOST if passed < NEW_AUDITS else 1.0

    def snapshot(self, key: bytes, now: float) -> dict[str, object]:
        """One worker's standing, for /jsonstats and status pages."""
        standing = self._at(key, now)
        score = standing.score()
        return {
            "score": round(score, 4),
            "allowed": score >= self.threshold,
            "answers": standing.answers,
            "errors": standing.errors,
            "timeouts": standing.timeouts,
            "audits_passed": standing.audits_passed,
            "audits_failed": standing.audits_failed,
            "reports": standing.reports,
            "reporters": len(standing.reporters),
            "last_reason": standing.last_reason,
            "seen_s": round(now - standing.first_seen, 1),
        }

    def workers(self) -> list[bytes]:
        return list(self._standings)

    def status(self, now: float) -> dict[str, object]:
        """Every worker's standing by key (hex), and the rules that read it."""
        return {
            "threshold": self.threshold,
            "half_life_s": self.half_life_s,
            "workers": {key.hex(): self.snapshot(key, now) for key in list(self._standings)},
        }
