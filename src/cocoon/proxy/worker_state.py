"""What the proxy's router knows of each worker and each model's traffic.

A worker's record (capacity, latency estimates per model, open assignments,
failure penalty), what is kept of it when its key leaves, and a model's recent
assignments by worker and operator, from which fair shares are measured."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class LatencyEstimate:
    """A worker's first-chunk latency for one model, as last measured."""

    ewma_ms: float
    # When it was measured (the caller's clock) and the model's request count then.
    at: float
    seq: int


@dataclass
class WorkerInfo:
    """A connected worker as the proxy sees it."""

    key_id: str
    models: frozenset[str]
    coefficient_milli: int
    max_active_requests: int
    trusted: bool
    channel: Any = None  # the wire Channel; typed loosely to keep the router sans-IO
    # Who runs it: the wallet it is paid to, or its key id when it has none. Fair
    # shares are capped per operator, since one operator may run many keys.
    operator: str = ""
    active: int = 0
    # Plain moving average of all first-chunk latencies (shown in stats).
    first_chunk_ewma_ms: float = 0.0
    served: int = 0
    failures: int = 0
    # What routing uses: per model, decaying toward the prior.
    latency: dict[str, LatencyEstimate] = field(default_factory=dict)
    # Dispatched requests not settled yet, and those of them with no first chunk yet,
    # each in the order dispatched (so the oldest waiting is the first): routing reads
    # both for every request, which a scan of the open ones made O(concurrency).
    open: dict[Assignment, None] = field(default_factory=dict)
    waiting: dict[Assignment, None] = field(default_factory=dict)
    # Failures and timeouts: a cost factor that decays, and how many in a row.
    penalty: float = 0.0
    penalty_at: float = 0.0
    failure_streak: int = 0

    def __post_init__(self) -> None:
        if not self.operator:
            self.operator = self.key_id

    @property
    def free(self) -> int:
        return self.max_active_requests - self.active

    @property
    def pending(self) -> list[Assignment]:
        """Dispatched requests with no first chunk yet, oldest first."""
        return list(self.waiting)

    def unprobed(self, model: str) -> bool:
        """No history for `model` and no request of it open: a probe is due."""
        return model not in self.latency and not any(a.model == model for a in self.open)

    # -- its open requests (`open` and `waiting` change only here) -----------------

    def opened(self, assignment: Assignment) -> None:
        self.active += 1
        self.open[assignment] = None
        self.waiting[assignment] = None

    def answering(self, assignment: Assignment) -> None:
        """Its first chunk came."""
        self.waiting.pop(assignment, None)

    def closed(self, assignment: Assignment) -> bool:
        """It ended; False if it had ended already."""
        if self.open.pop(assignment, _MISSING) is _MISSING:
            return False
        self.waiting.pop(assignment, None)
        self.active -= 1
        return True

    def take_over(self, old: WorkerInfo) -> None:
        """A reconnect overtook the old connection's teardown: its requests still end
        here, merged with ours oldest first, as dispatched (`waited_ms` reads the first
        waiting)."""
        for assignment in old.open:
            assignment.worker = self
        self.open = dict.fromkeys(sorted([*old.open, *self.open], key=_started))
        self.waiting = dict.fromkeys(sorted([*old.waiting, *self.waiting], key=_started))
        old.open.clear()
        old.waiting.clear()
        self.active = len(self.open)


@dataclass(eq=False)
class Assignment:
    """One request sent to one worker, from dispatch to its end."""

    worker: WorkerInfo
    model: str
    started: float
    first_chunk_at: float | None = None
    # Set by the service when the worker broke the request (error, went away).
    failed: bool = False


@dataclass(frozen=True)
class RememberedWorker:
    """What routing knew of a worker that left, for when its key comes back: else a
    worker could shed its failure penalty by reconnecting."""

    latency: dict[str, LatencyEstimate]
    penalty: float
    penalty_at: float
    failure_streak: int

    def restore(self, worker: WorkerInfo) -> None:
        worker.latency = dict(self.latency)
        worker.penalty = self.penalty
        worker.penalty_at = self.penalty_at
        worker.failure_streak = self.failure_streak


# Departed workers remembered, oldest forgotten first.
REMEMBERED_WORKERS = 1024


@dataclass
class ModelTraffic:
    """A model's recent assignments: who got them, for fair shares."""

    window: int
    total: int = 0
    recent: deque[tuple[str, str]] = field(default_factory=deque)
    by_worker: Counter[str] = field(default_factory=Counter)
    by_operator: Counter[str] = field(default_factory=Counter)

    def add(self, key_id: str, operator: str) -> None:
        self.total += 1
        self.recent.append((key_id, operator))
        self.by_worker[key_id] += 1
        self.by_operator[operator] += 1
        if len(self.recent) > self.window:
            old_key, old_operator = self.recent.popleft()
            _take_one(self.by_worker, old_key)
            _take_one(self.by_operator, old_operator)


def _take_one(counter: Counter[str], key: str) -> None:
    # Keys come and go: keep the counter no larger than the window.
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


_MISSING = object()


def _started(assignment: Assignment) -> float:
    return assignment.started


def waited_ms(worker: WorkerInfo, now: float) -> float:
    """How long the oldest request still waiting for its first chunk has waited."""
    for oldest in worker.waiting:
        return max(0.0, now - oldest.started) * 1000
    return 0.0


def remember_worker(worker: WorkerInfo) -> RememberedWorker:
    """What routing keeps of a worker that leaves."""
    return RememberedWorker(
        dict(worker.latency), worker.penalty, worker.penalty_at, worker.failure_streak
    )
