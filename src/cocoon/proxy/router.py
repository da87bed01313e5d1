"""Which worker gets a request: model, price, free capacity, expected latency, fairness.

Sans-IO: the router holds what the proxy knows of each worker and ranks
candidates; the service does the sending and tells the router what happened
(`dispatch`, `record_first_chunk`, `settle`). Every decision takes `now` (the
caller's monotonic clock, in seconds) and draws from the router's injected
`random.Random`, so tests replay a whole day of traffic without sleeping.

The scheme, and why:

1. **Filter.** A worker is a candidate if the client allowed it (the request is
   sealed to those keys only), it serves the model and its price coefficient is
   within the client's bound.
2. **Tiers.** Free workers under their fair-share cap first, then free workers
   over it, then full ones (tried last: they may have freed a slot by then).
   The cap (DESIGN §11, anti-concentration): no single worker, nor the workers
   of one operator wallet, may take more than `max_share` of a model's last
   `window` assignments while someone else has free capacity. An operator
   could otherwise win all traffic by running many cheap keys, or one worker
   by being slightly faster. A worker that failed last time or sits on an
   overdue request is no "free capacity": the cap never forces traffic onto it.
   With exactly two operators the default cap of 1/2 means an even split, even
   when one is slower: anti-concentration wins over latency there.
3. **Power of two choices** inside the first tier (Mitzenmacher, "The Power of
   Two Choices in Randomized Load Balancing", 2001): draw two workers at
   random, take the cheaper. Always taking the single best herds every
   decision onto one worker whose numbers are stale; two random picks keep the
   load almost as even as full knowledge would, without the herd. The rest of
   the tier follows by cost, as fallbacks for the service to try in order.
4. **Cost** = expected first-chunk latency x (1 + requests still waiting for
   their first chunk) x (1 + busy share of slots) x (1 + failure penalty), after
   Finagle/Linkerd's "peak EWMA" balancer (latency x outstanding). Requests
   with no first chunk yet weigh heavily: a worker that accepts and never
   answers looks idle by every other measure, and must not attract everything.
5. **Estimates that stay fresh** (discounted estimates for non-stationary
   bandits, Garivier & Moulines 2008; optimism under uncertainty, Auer et al.
   2002): a worker's latency estimate decays toward an optimistic prior as
   time passes and as the model's requests go elsewhere, so one slow first
   answer is forgotten and an idle worker is tried again. The decay is
   geometric (latency ratios, not differences, fade), since first-chunk
   latencies span orders of magnitude: a cold start 100x slower than usual
   is back within 1.5x of the prior in 3.5 half-lives, not 7.6. A worker with no
   history starts as the slowest proven worker of the model (`_newcomer_ms`):
   never ranked above one that has answered (a worker that accepts requests and
   never answers would otherwise win them all, issue 16), yet probed at once:
   with no history and no request of the model open it leads its tier (left to
   a tie with the slowest, 20 requests passed a late joiner by in ~3 % of
   runs). The relay's first-chunk deadline (`proxy/deadlines.py`) bounds what
   that probe costs a client if it never answers. The oldest unanswered
   request's age is a lower bound on the latency (a silent worker's estimate
   grows while it is silent), and a request that ends unanswered counts as a
   sample of at least that long (a timeout is a measurement).
6. **Failures** (an error, or an answer overdue and never given) multiply the
   cost by a penalty that decays in time and doubles with each failure in a
   row, so a dead worker is probed ever more rarely but never written off. What
   a worker's key earned is remembered when it leaves and comes back.

Measured (tests/proxy/test_router_fairness.py, tests/integration/test_routing.py):
200 sequential requests to two equal workers split 100/100 (~50/50 uncapped); a
worker that joins gets the next request; one twice as slow as two others gets
~13 % (~15 % of two); the old lowest-estimate router sent 29 of 30 to one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .worker_state import (
    REMEMBERED_WORKERS,
    Assignment,
    LatencyEstimate,
    ModelTraffic,
    RememberedWorker,
    WorkerInfo,
    remember_worker,
    waited_ms,
)


@dataclass(frozen=True)
class RouterConfig:
    """How the proxy spreads a model's requests over its workers."""

    # Assignments per model that fair shares are measured over.
    window: int = 100
    # Most of a model's window one worker, or one operator's workers, may take
    # while another has free capacity. Applies to operators only when at least two
    # operators are candidates, to workers only when at least two workers are.
    max_share: float = 0.5
    # Weight of the newest first-chunk latency in a worker's estimate.
    latency_alpha: float = 0.3
    # A latency estimate moves halfway back to the prior in this many seconds...
    decay_half_life_s: float = 60.0
    # ...and in this many of the model's requests routed since it was measured.
    decay_half_life_requests: float = 10.0
    # The prior is this fraction of the best estimate among the model's workers:
    # below every measured worker, so the unmeasured and the long unheard get tried.
    prior_factor: float = 0.5
    # The prior when no worker of the model has answered yet.
    cold_prior_ms: float = 50.0
    # A failure adds 1 to the penalty factor (2, 4, ... when they come in a row),
    # which halves in this many seconds.
    penalty_half_life_s: float = 30.0


class Router:
    """The workers of one proxy and how to rank them."""

    def __init__(
        self, config: RouterConfig | None = None, rng: random.Random | None = None
    ) -> None:
        self.config = config or RouterConfig()
        self.rng = rng or random.Random()
        self.workers: dict[str, WorkerInfo] = {}
        self._traffic: dict[str, ModelTraffic] = {}
        self._departed: dict[str, RememberedWorker] = {}
        # The proxy's reputation of a worker (key id → score in [0, 1], 0.5 neutral)
        # and the score below which it gets no traffic (DESIGN §11; proxy/reports.py).
        self.reputation: Callable[[str], float] | None = None
        self.reputation_threshold = 0.0

    def add(self, worker: WorkerInfo) -> None:
        old = self.workers.get(worker.key_id)
        if old is not None and old is not worker:
            # A reconnect overtook the old connection's teardown: the old requests
            # still end, and must free the slots they hold here.
            worker.take_over(old)
            remember_worker(old).restore(worker)
        elif (remembered := self._departed.pop(worker.key_id, None)) is not None:
            remembered.restore(worker)
        self.workers[worker.key_id] = worker

    def remove(self, key_id: str, channel: Any = None) -> None:
        worker = self.workers.get(key_id)
        if worker is not None and (channel is None or worker.channel is channel):
            del self.workers[key_id]
            self._departed[key_id] = remember_worker(worker)
            while len(self._departed) > REMEMBERED_WORKERS:
                del self._departed[next(iter(self._departed))]

    def models(self) -> dict[str, list[WorkerInfo]]:
        by_model: dict[str, list[WorkerInfo]] = {}
        for worker in self.workers.values():
            for model in worker.models:
                by_model.setdefault(model, []).append(worker)
        return by_model

    def serves(self, model: str) -> bool:
        return any(model in worker.models for worker in self.workers.values())

    # -- ranking -------------------------------------------------------------

    def candidates(
        self, model: str, max_coefficient_milli: int, allowed: list[str], *, now: float
    ) -> list[WorkerInfo]:
        """Workers among `allowed` that serve `model` within the price bound, to try in
        this order (see the module docstring for the scheme)."""
        found: list[WorkerInfo] = []
        # Each worker's reputation once: whether it may serve, and how much its
        # cost is doubted.
        doubt: dict[str, float] = {}
        for key_id in dict.fromkeys(allowed):
            worker = self.workers.get(key_id)
            if (
                worker is None
                or model not in worker.models
                or worker.coefficient_milli > max_coefficient_milli
            ):
                continue
            if self.reputation is None:
                doubt[key_id] = 1.0
            else:
                score = self.reputation(key_id)
                if score < self.reputation_threshold:
                    continue
                doubt[key_id] = _doubt(score)
            found.append(worker)
        if not found:
            return []
        prior = self._prior_ms(model)
        # Each worker's latency estimate once: both its cost and its suspicion read it.
        estimate = {w.key_id: self._estimate_ms(w, model, prior, now) for w in found}
        cost = {w.key_id: self._cost(w, estimate[w.key_id], now) * doubt[w.key_id] for w in found}
        free = [w for w in found if w.free > 0]
        capped = self._over_cap(model, found)
        if not any(
            w.key_id not in capped and not self._suspect(w, estimate[w.key_id], now) for w in free
        ):
            # The cap binds only while someone else can take the request: free capacity
            # on a worker that fails or does not answer is no capacity.
            capped = set()
        tiers: tuple[list[WorkerInfo], list[WorkerInfo], list[WorkerInfo]] = ([], [], [])
        for w in found:
            tiers[2 if w.free <= 0 else 1 if w.key_id in capped else 0].append(w)
        ranked: list[WorkerInfo] = []
        for tier in tiers:
            tier.sort(key=lambda w: cost[w.key_id])
            unprobed = [w for w in tier if w.unprobed(model)]
            if unprobed:
                first = self.rng.choice(unprobed)
                tier = [first] + [w for w in tier if w is not first]
            elif len(tier) >= 2:
                a, b = self.rng.sample(tier, 2)
                first = b if cost[b.key_id] < cost[a.key_id] else a
                tier = [first] + [w for w in tier if w is not first]
            ranked.extend(tier)
        return ranked

    def expected_ms(self, worker: WorkerInfo, model: str, now: float) -> float:
        """The first-chunk latency routing expects of `worker` for `model` now."""
        return _expected(worker, self._estimate_ms(worker, model, self._prior_ms(model), now), now)

    def _prior_ms(self, model: str) -> float:
        best = [
            e.ewma_ms
            for w in self.workers.values()
            if model in w.models and (e := w.latency.get(model)) is not None
        ]
        if not best:
            return self.config.cold_prior_ms
        return self.config.prior_factor * min(best)

    def _estimate_ms(self, worker: WorkerInfo, model: str, prior: float, now: float) -> float:
        estimate = worker.latency.get(model)
        if estimate is None:
            return self._newcomer_ms(model, prior, now)
        return self._decayed(estimate, model, prior, now)

    # -- workers without history (issue 16) -------------------------------------

    def _newcomer_ms(self, model: str, prior: float, now: float) -> float:
        """What a worker with no history for `model` is expected to take: as much as
        the slowest worker that has answered is expected to take now (never less),
        or the cold prior when none has."""
        expected = [
            self._decayed(e, model, prior, now)
            for w in self.workers.values()
            if model in w.models and (e := w.latency.get(model)) is not None
        ]
        return max(expected) if expected else self.config.cold_prior_ms

    def _suspect(self, worker: WorkerInfo, estimate_ms: float, now: float) -> bool:
        """Failed last time, or waiting well past what it usually takes to answer
        (`estimate_ms`, `_estimate_ms`)."""
        return worker.failure_streak > 0 or waited_ms(worker, now) > 2 * estimate_ms

    def _decayed(self, estimate: LatencyEstimate, model: str, prior: float, now: float) -> float:
        traffic = self._traffic.get(model)
        since = (traffic.total if traffic is not None else estimate.seq) - estimate.seq
        weight = _halved(now - estimate.at, self.config.decay_half_life_s) * _halved(
            since, self.config.decay_half_life_requests
        )
        # Geometric: latencies spread over orders of magnitude (a cold start is 100x
        # a warm answer), and a 100x outlier should fade as fast as a 2x one.
        return prior * math.pow(max(estimate.ewma_ms, 1e-3) / prior, weight)

    def _penalty(self, worker: WorkerInfo, now: float) -> float:
        if not worker.penalty:
            return 0.0  # nearly every worker, nearly always: no power to take
        return worker.penalty * _halved(now - worker.penalty_at, self.config.penalty_half_life_s)

    def _cost(self, worker: WorkerInfo, estimate_ms: float, now: float) -> float:
        """The cost before doubt (`_doubt`, from the worker's reputation)."""
        busy = worker.active / max(1, worker.max_active_requests)
        return (
            _expected(worker, estimate_ms, now)
            * (1 + len(worker.waiting))
            * (1 + busy)
            * (1 + self._penalty(worker, now))
        )

    def _over_cap(self, model: str, found: list[WorkerInfo]) -> set[str]:
        """Candidates whose (or whose operator's) share of the model's recent traffic
        is over `max_share`."""
        traffic = self._traffic.get(model)
        if traffic is None or not traffic.recent or len(found) < 2:
            return set()
        n = len(traffic.recent)
        limit = self.config.max_share
        cap_operators = len({w.operator for w in found}) >= 2
        return {
            w.key_id
            for w in found
            if traffic.by_worker[w.key_id] / n > limit
            or (cap_operators and traffic.by_operator[w.operator] / n > limit)
        }

    # -- what happened ---------------------------------------------------------

    def dispatch(self, worker: WorkerInfo, model: str, now: float) -> Assignment:
        """The service sends a request of `model` to `worker` now."""
        assignment = Assignment(worker, model, now)
        worker.opened(assignment)
        traffic = self._traffic.get(model)
        if traffic is None:
            traffic = self._traffic[model] = ModelTraffic(self.config.window)
        traffic.add(worker.key_id, worker.operator)
        return assignment

    def record_first_chunk(self, assignment: Assignment, now: float) -> None:
        """The worker's first chunk for `assignment` arrived now."""
        if assignment.first_chunk_at is not None:
            return
        assignment.first_chunk_at = now
        worker = assignment.worker
        worker.answering(assignment)
        latency_ms = max(0.0, now - assignment.started) * 1000
        if worker.served == 0:
            worker.first_chunk_ewma_ms = latency_ms
        else:
            worker.first_chunk_ewma_ms += self.config.latency_alpha * (
                latency_ms - worker.first_chunk_ewma_ms
            )
        worker.served += 1
        worker.failure_streak = 0
        self._observe(assignment, latency_ms, now, censored=False)

    def settle(self, assignment: Assignment, now: float) -> None:
        """`assignment` is over (answered, failed, timed out or cancelled)."""
        worker = assignment.worker
        if not worker.closed(assignment):
            return  # settled already
        timed_out = False
        if assignment.first_chunk_at is None:
            # Unanswered after t: the latency is at least t. An early cancel (t below
            # what we expected) says nothing and changes nothing; a longer wait is a
            # timeout, and counts against the worker like a failure.
            waited_ms = max(0.0, now - assignment.started) * 1000
            timed_out = waited_ms > self.expected_ms(worker, assignment.model, now)
            self._observe(assignment, waited_ms, now, censored=True)
        if assignment.failed:
            worker.failures += 1
        if assignment.failed or timed_out:
            # Doubles with each failure in a row (exponential backoff, as TCP backs off
            # its retransmission timer, RFC 6298 §5.5): a dead worker is probed less and
            # less often, yet never given up on, since the penalty decays.
            worker.penalty = self._penalty(worker, now) + 2.0 ** min(worker.failure_streak, 10)
            worker.penalty_at = now
            worker.failure_streak += 1

    def _observe(
        self, assignment: Assignment, latency_ms: float, now: float, censored: bool
    ) -> None:
        worker, model = assignment.worker, assignment.model
        traffic = self._traffic[model]
        estimate = worker.latency.get(model)
        if estimate is None:
            if censored and latency_ms <= self._prior_ms(model):
                return
            worker.latency[model] = LatencyEstimate(latency_ms, now, traffic.total)
            return
        current = self._decayed(estimate, model, self._prior_ms(model), now)
        if censored:
            if latency_ms <= current:
                return
            updated = latency_ms
        else:
            # From the decayed value, not the stored one: what has been forgotten
            # stays forgotten.
            updated = current + self.config.latency_alpha * (latency_ms - current)
        worker.latency[model] = LatencyEstimate(updated, now, traffic.total)

    # -- stats ---------------------------------------------------------------

    def shares(self) -> dict[str, dict[str, float]]:
        """Per model, each worker's share of the recent assignments."""
        result: dict[str, dict[str, float]] = {}
        for model, traffic in sorted(self._traffic.items()):
            n = len(traffic.recent)
            if n:
                result[model] = {
                    key_id: round(count / n, 3)
                    for key_id, count in sorted(traffic.by_worker.items())
                    if count
                }
        return result


def _expected(worker: WorkerInfo, estimate_ms: float, now: float) -> float:
    """The latency to expect of `worker` given its estimate: a request unanswered for
    t seconds says it is at least t."""
    return max(estimate_ms, waited_ms(worker, now))


def _doubt(score: float) -> float:
    """1 for a neutral reputation (0.5), more for a doubted worker, less for a proven one."""
    return 0.5 / max(score, 0.05)


def _halved(elapsed: float, half_life: float) -> float:
    """What is left of 1 after `elapsed` at `half_life` (clocks never run back)."""
    return math.pow(0.5, max(0.0, elapsed) / half_life)
