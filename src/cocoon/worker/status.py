"""What a worker shows of itself: `/jsonstats`."""

from __future__ import annotations

import time
from typing import Protocol

from ..config import WorkerConfig
from ..crypto.sealing import OpenSessions
from ..node import NodeCredentials
from ..payments.journal import JournaledBook
from ..payments.sides import PayeeSide, payments_snapshot
from ..registry.follower import RootFollower
from ..tee.evidence import tee_kind
from .links import ProxyLink
from .stats import WorkerStats
from .verifying import VerifyingBackend


class WorkerView(Protocol):
    """What /jsonstats reads of a worker (the service's `Worker` is one)."""

    config: WorkerConfig
    credentials: NodeCredentials
    backend: VerifyingBackend
    payee: PayeeSide | None
    follower: RootFollower | None
    sessions: OpenSessions
    stats: WorkerStats
    started_at: float

    @property
    def links(self) -> list[ProxyLink]:
        """The proxies it serves or tries to, one link each."""
        ...

    @property
    def active(self) -> int:
        """Requests it is running now."""
        ...


def link_status(link: ProxyLink) -> dict[str, object]:
    """One proxy this worker serves (or tries to)."""
    channel = link.channel
    return {
        "address": link.address,
        "connected": channel is not None,
        "key_id": None if channel is None else channel.key_id,
        "trusted": None if channel is None else channel.verdict.trusted,
        "attestation": None if channel is None else channel.verdict.reason,
        "tee": None if channel is None else tee_kind(channel.verdict.provider),
        "pay_channel": link.pay_channel,
        "active": len(link.tasks),
        "reconnects": link.dialer.reconnects,
        "refused": link.dropped or None,
    }


def worker_status(worker: WorkerView) -> dict[str, object]:
    """Everything /jsonstats shows."""
    stats = worker.stats
    links = [link_status(link) for link in worker.links]
    first = next((s for s in links if s["connected"]), None)
    backend = worker.backend
    book = worker.payee.book if worker.payee is not None else None
    # Read before the payments snapshot, which folds the journal in.
    journal = book.journal_status() if isinstance(book, JournaledBook) else None
    return {
        "role": "worker",
        "node": worker.credentials.trust_summary(),
        "network": worker.config.network,
        "uptime_s": round(time.time() - worker.started_at, 1),
        "backend": backend.name,
        "models": backend.models(),
        "scoring": backend.scoring_models(),
        "coefficient_milli": worker.config.coefficient_milli,
        "max_active_requests": worker.config.max_active_requests,
        "active": worker.active,
        "proxy": first,
        "proxies": links,
        "root": None
        if worker.follower is None
        else worker.follower.status(images_enforced=worker.credentials.provider != "none"),
        "reconnects": sum(link.dialer.reconnects for link in worker.links),
        "refused_proxy_connections": {
            reason: count for link in worker.links for reason, count in link.dialer.refusals.items()
        },
        "requests": {
            "total": stats.requests,
            "completed": stats.completed,
            "failed": stats.failed,
            "cancelled": stats.cancelled,
            "refused": stats.refused,
        },
        "completion_tokens": stats.completion_tokens,
        "seal_sessions": {"held": len(worker.sessions), "opened": worker.sessions.opened},
        # As a verifier: verdicts signed on false answers, and evidence it found plausible.
        "verdicts": {
            "signed": backend.verdicts_signed,
            "not_signed": backend.verdicts_refused,
        },
        "payments": None
        if worker.payee is None
        else payments_snapshot(worker.payee.book, worker.payee.link),
        # Receipts journaled before they are folded into the book (payments/journal.py).
        "receipts_journal": journal,
        "first_chunk_p50_s": stats.first_chunk_seconds.quantile(0.5),
        "first_chunk_p99_s": stats.first_chunk_seconds.quantile(0.99),
    }
