"""Which worker gets a request: model, price, free capacity, latency.

Sans-IO: the router holds what the proxy knows of each worker and ranks
candidates; the service does the sending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Weight of the newest observation in the latency moving average.
EWMA_ALPHA = 0.2


@dataclass
class WorkerInfo:
    """A connected worker as the proxy sees it."""

    key_id: str
    models: frozenset[str]
    coefficient_milli: int
    max_active_requests: int
    trusted: bool
    channel: Any = None  # the wire Channel; typed loosely to keep the router sans-IO
    active: int = 0
    first_chunk_ewma_ms: float = 0.0
    served: int = 0
    failures: int = 0
    connected_at: float = field(default_factory=time.time)

    @property
    def free(self) -> int:
        return self.max_active_requests - self.active


class Router:
    """The workers of one proxy and how to rank them."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerInfo] = {}

    def add(self, worker: WorkerInfo) -> None:
        self.workers[worker.key_id] = worker

    def remove(self, key_id: str, channel: Any = None) -> None:
        worker = self.workers.get(key_id)
        if worker is not None and (channel is None or worker.channel is channel):
            del self.workers[key_id]

    def models(self) -> dict[str, list[WorkerInfo]]:
        by_model: dict[str, list[WorkerInfo]] = {}
        for worker in self.workers.values():
            for model in worker.models:
                by_model.setdefault(model, []).append(worker)
        return by_model

    def serves(self, model: str) -> bool:
        return any(model in worker.models for worker in self.workers.values())

    def candidates(
        self, model: str, max_coefficient_milli: int, allowed: list[str]
    ) -> list[WorkerInfo]:
        """Workers among `allowed` that serve `model` within the price bound, best first."""
        found = []
        for key_id in allowed:
            worker = self.workers.get(key_id)
            if (
                worker is not None
                and model in worker.models
                and worker.coefficient_milli <= max_coefficient_milli
            ):
                found.append(worker)
        found.sort(key=_rank)
        return found

    def record_first_chunk(self, worker: WorkerInfo, latency_ms: float) -> None:
        if worker.served == 0:
            worker.first_chunk_ewma_ms = latency_ms
        else:
            worker.first_chunk_ewma_ms += EWMA_ALPHA * (latency_ms - worker.first_chunk_ewma_ms)
        worker.served += 1


def _rank(worker: WorkerInfo) -> tuple[bool, float]:
    # Full workers go last; among the rest, expected wait grows with latency
    # and with the share of slots already busy.
    load = worker.active / max(1, worker.max_active_requests)
    return (worker.free <= 0, (worker.first_chunk_ewma_ms + 1.0) * (1.0 + load))
