"""A worker's counters: plain ints for code, a metrics registry for /metrics."""

from __future__ import annotations

from collections.abc import Callable

from ..metrics import Registry


class WorkerStats:
    """Counters a worker exposes (plain ints for code, a Registry for /metrics)."""

    def __init__(self, active: Callable[[], float]) -> None:
        self.requests = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.refused = 0
        self.completion_tokens = 0
        self.metrics = Registry("cocoon_worker")
        self.requests_total = self.metrics.counter("requests_total", "Requests by outcome.")
        self.tokens_total = self.metrics.counter("tokens_total", "Tokens served, by class.")
        self.first_chunk_seconds = self.metrics.histogram(
            "first_chunk_seconds", "Time from request to first answer chunk."
        )
        self.request_seconds = self.metrics.histogram(
            "request_seconds", "Time from request to answer end."
        )
        self.metrics.gauge("active_requests", "Requests running.", active)
