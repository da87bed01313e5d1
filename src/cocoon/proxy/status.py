"""What a proxy shows of itself: `/jsonstats` and its status page."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ..config import ProxyConfig, split_address
from ..metrics import Counter
from ..node import NodeCredentials
from ..payments.ledger import Ledger
from ..payments.sides import payments_snapshot
from ..pricing import Prices
from ..registry.follower import RootFollower
from ..tee.evidence import tee_kind
from ..wire.transport import Channel
from .admission import WorkerAdmission
from .inflight import InflightRegistry
from .payments import ProxyPayments, journals_status
from .relay import Relay
from .reports import ReportDesk
from .router import Router
from .settlement import Settlement


class ProxyView(Protocol):
    """What the status reads of a proxy (the service's `Proxy` is one)."""

    config: ProxyConfig
    credentials: NodeCredentials
    ledger: Ledger
    payments: ProxyPayments | None
    follower: RootFollower | None
    admission: WorkerAdmission
    router: Router
    reports: ReportDesk
    inflight: InflightRegistry
    clients: dict[Channel, dict[str, asyncio.Task[None]]]
    port: int
    started_at: float
    settlement: Settlement
    relay: Relay
    prices: Prices
    refused_total: Counter


def proxy_status(proxy: ProxyView) -> dict[str, object]:
    """Everything /jsonstats and the status page show."""
    totals = proxy.ledger.totals()
    relay = proxy.relay
    return {
        "role": "proxy",
        "node": proxy.credentials.trust_summary(),
        "network": proxy.config.network,
        "listen": f"{split_address(proxy.config.listen)[0]}:{proxy.port}",
        "uptime_s": round(time.time() - proxy.started_at, 1),
        "workers": [
            {
                "key_id": w.key_id,
                "address": w.channel.peer_address,
                "models": sorted(w.models),
                "coefficient_milli": w.coefficient_milli,
                "max_active_requests": w.max_active_requests,
                "active": w.active,
                "served": w.served,
                "failures": w.failures,
                "first_chunk_ewma_ms": round(w.first_chunk_ewma_ms, 2),
                "trusted": w.trusted,
                "tee": tee_kind(w.channel.verdict.provider),
                "provider": w.channel.verdict.provider,
                "attestation": w.channel.verdict.reason,
                "reputation": round(proxy.reports.score(w.key_id), 4),
            }
            for w in proxy.router.workers.values()
        ],
        "models": {model: len(ws) for model, ws in sorted(proxy.router.models().items())},
        "routing_shares": proxy.router.shares(),
        "reputation": proxy.reports.status(),
        "equivocations": proxy.settlement.equivocations.status(),
        "clients": [
            {
                "key_id": c.key_id,
                "address": c.peer_address,
                "trusted": c.verdict.trusted,
                "active": len(tasks),
            }
            for c, tasks in proxy.clients.items()
        ],
        "requests": {
            "running": proxy.inflight.running,
            "by_outcome": {
                f"{dict(k).get('model')}/{dict(k).get('outcome')}": int(v)
                for k, v in relay.requests_total.values.items()
            },
            "retries": int(relay.retries_total.total()),
            "first_chunk_p50_s": relay.first_chunk_seconds.quantile(0.5),
            "first_chunk_p99_s": relay.first_chunk_seconds.quantile(0.99),
        },
        "refused_workers": dict(proxy.admission.refused),
        "root": None
        if proxy.follower is None
        else proxy.follower.status(images_enforced=proxy.credentials.provider != "none"),
        "refused_connections": {
            dict(k).get("reason", "?"): int(v) for k, v in proxy.refused_total.values.items()
        },
        "billing": {
            "requests": totals.requests,
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "billed_nano": totals.amount_nano,
            "bad_receipts": int(proxy.settlement.bad_receipts_total.total()),
            "receipt_signatures_checked": proxy.settlement.biller.signatures_checked,
            "prices": {
                name: getattr(proxy.prices, name) for name in proxy.prices.__struct_fields__
            },
        },
        "payments": None
        if proxy.payments is None
        else payments_snapshot(proxy.payments.book, proxy.payments.link),
        **journals_status(proxy.payments),
    }
