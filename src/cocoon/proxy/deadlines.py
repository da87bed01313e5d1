"""How long the relay waits for a worker's first chunk before it tries the next candidate.

A worker that accepts requests and never answers (or whose model server hangs
while its heartbeats go on) looks idle to everything else the proxy measures.
Without a deadline each of its requests waited the whole request timeout
(300 s) though other candidates were free (issue 16: 10 of 10 requests hung
75 s). So each attempt has a first-chunk deadline:

- derived from what answering takes there: `factor` x the worker's own
  first-chunk moving average for the model, or, for a worker with no history,
  the slowest average among the model's workers, and never under `floor_s` (a
  long prompt's prefill on a CPU takes seconds). Only first chunks that came
  count: the router also learns from requests that went unanswered (a lower
  bound of the latency), and a deadline grown from its own misses would double
  with each (0.3, 1.2, 4.8 s ... measured before this was kept apart);
- `cold_s` when no worker of the model has answered yet (a model may be
  loading on its first request);
- only when another candidate is left to try: the last candidate keeps the
  rest of the request's timeout, since moving on would leave nobody.

Past the deadline the attempt is cancelled and counts as a failure in the
router (its penalty doubles with each in a row, so the worker is demoted),
and a worker that misses `drop_after` deadlines in a row is disconnected
(it may reconnect; the router remembers its penalty, so it does not start
afresh). A first chunk in time clears its misses.

Sans-IO: the relay asks `deadline_s` and reports `answered` / `missed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .worker_state import WorkerInfo

# Workers whose misses are remembered, the longest untouched forgotten first.
REMEMBERED_MISSES = 1024
# Workers per model whose first-chunk latency is remembered.
REMEMBERED_LATENCIES = 1024


@dataclass(frozen=True)
class DeadlineConfig:
    """First-chunk deadlines of the relay's attempts."""

    # The deadline is this many times the worker's usual first-chunk latency...
    factor: float = 4.0
    # ...and never shorter than this (seconds).
    floor_s: float = 10.0
    # When no worker of the model has answered yet (seconds).
    cold_s: float = 60.0
    # Deadlines missed in a row after which the worker is disconnected.
    drop_after: int = 3
    # Weight of the newest first-chunk latency in a worker's average.
    alpha: float = 0.3


@dataclass
class FirstChunkDeadlines:
    """The deadlines: first-chunk latencies that came (per model, per worker key id),
    and each worker's misses in a row."""

    config: DeadlineConfig = field(default_factory=DeadlineConfig)
    misses: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    def deadline_s(self, worker: WorkerInfo, model: str, *, last_candidate: bool) -> float | None:
        """Seconds to wait for `worker`'s first chunk of `model`; None: no deadline."""
        if last_candidate:
            return None
        known = self.latency_ms.get(model)
        if not known:
            return self.config.cold_s
        usual_ms = known.get(worker.key_id)
        if usual_ms is None:
            usual_ms = max(known.values())
        return max(self.config.floor_s, self.config.factor * usual_ms / 1000)

    def answered(self, worker: WorkerInfo, model: str, latency_s: float) -> None:
        """A first chunk came after `latency_s`: learnt, and the worker's misses forgiven."""
        self.misses.pop(worker.key_id, None)
        known = self.latency_ms.setdefault(model, {})
        latency_ms = latency_s * 1000
        previous = known.pop(worker.key_id, None)
        known[worker.key_id] = (
            latency_ms
            if previous is None
            else previous + self.config.alpha * (latency_ms - previous)
        )
        while len(known) > REMEMBERED_LATENCIES:
            del known[next(iter(known))]

    def missed(self, worker: WorkerInfo) -> bool:
        """A deadline passed; True when the worker has now missed too many in a row."""
        count = self.misses.pop(worker.key_id, 0) + 1
        self.misses[worker.key_id] = count
        while len(self.misses) > REMEMBERED_MISSES:
            del self.misses[next(iter(self.misses))]
        # Kept past a drop: a worker that reconnects and misses again goes at once.
        return count >= self.config.drop_after
