"""What a client shows of its trust in the network: `/v1/attestation`.

The proxy in use and every proxy held, the workers the client verified (each
with its evidence and what the root says of it: listed, staked), the root as
the client follows it, and what it refused and why.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ..crypto.signing import key_id
from ..registry.rules import image_of, model_hash_kind
from ..tee.evidence import tee_kind
from .directory import VerifiedWorker
from .errors import ClientError
from .proxies import ProxyPool


async def attestation_status(pool: ProxyPool) -> dict[str, Any]:
    channel = pool.channel
    proxy: dict[str, Any] | None = None
    if channel is not None:
        proxy = {
            "key_id": channel.key_id,
            "address": channel.peer_address,
            "trusted": channel.verdict.trusted,
            "attestation": channel.verdict.reason,
            "provider": channel.verdict.provider,
            "tee": tee_kind(channel.verdict.provider),
            "measurements": channel.verdict.measurements,
        }
    workers: list[dict[str, Any]] = []
    if channel is not None:
        with contextlib.suppress(ClientError):  # the status page still answers
            workers = [_worker(pool, w) for w in await pool.workers()]
    return {
        "role": "client",
        "node": pool.credentials.trust_summary(),
        "proxy": proxy,
        "workers": workers,
        "proxies": proxies_status(pool),
        "root": None
        if pool.follower is None
        else pool.follower.status(images_enforced=pool.credentials.provider != "none"),
        "refused_workers": dict(pool.verifier.refused),
        "refused_proxy_connections": proxy_refusals(pool),
        "payments": payments_status(pool),
        "reputation": reputation_status(pool),
    }


def proxy_refusals(pool: ProxyPool) -> dict[str, int]:
    """How often each reason refused a proxy connection, across the pool."""
    refusals: dict[str, int] = {}
    for session in pool.sessions.values():
        for reason, count in session.dialer.refusals.items():
            refusals[reason] = refusals.get(reason, 0) + count
    return refusals


def proxies_status(pool: ProxyPool) -> list[dict[str, object]]:
    """Each held proxy: connected or not, its evidence, latency, load and channel."""
    primary = pool.primary
    out = []
    for session in pool.sessions.values():
        channel = session.channel
        out.append(
            {
                "address": session.address,
                "connected": channel is not None,
                "in_use": session is primary,
                "key_id": None if channel is None else channel.key_id,
                "trusted": None if channel is None else channel.verdict.trusted,
                "attestation": None if channel is None else channel.verdict.reason,
                "provider": None if channel is None else channel.verdict.provider,
                "measurements": {} if channel is None else channel.verdict.measurements,
                "latency_ms": round(session.latency_ms, 2),
                "open_requests": session.open_requests,
                "pay_channel": session.pay_channel,
                "refused": session.proxy_refusal or None,
            }
        )
    return out


def payments_status(pool: ProxyPool) -> dict[str, object] | None:
    """The payer's status as the primary proxy's session sees it, with every channel."""
    primary = pool.primary or next(iter(pool.sessions.values()), None)
    if primary is None:
        return None
    status = primary.payments_status()
    if status is not None:
        status["channels"] = {
            s.address: s.pay_channel for s in pool.sessions.values() if s.pay_channel
        }
    return status


def reputation_status(pool: ProxyPool) -> dict[str, Any]:
    """The client's reputation of every worker it has seen (from its own audits, the
    answers it got, errors and timeouts), by key id."""
    now = time.monotonic()
    reputation = pool.reputation
    names = {w.public_key: w.key_id for w in pool.verifier.known()}
    workers = {}
    for key in reputation.workers():
        kid = names.get(key) or key_id(key)
        workers[kid] = {"key_id": kid, **reputation.snapshot(key, now)}
    return {"threshold": reputation.threshold, "workers": workers}


def _worker(pool: ProxyPool, w: VerifiedWorker) -> dict[str, Any]:
    return {
        "key_id": w.key_id,
        "models": sorted(w.models),
        "coefficient_milli": w.coefficient_milli,
        "trusted": w.verdict.trusted,
        "attestation": w.verdict.reason,
        "provider": w.verdict.provider,
        "tee": tee_kind(w.verdict.provider),
        "measurements": w.verdict.measurements,
        "hpke_suite": w.recipient.suite,
        "root": _root_view(pool, w),
        "scoring": sorted(w.scoring),
        "gpu_evidence": w.gpu_evidence or None,
        "region": w.region or None,
        "reputation": pool.reputation.snapshot(w.public_key, time.monotonic()),
        "proxy_reputation": None
        if w.proxy_reputation_milli < 0
        else w.proxy_reputation_milli / 1000,
    }


def _root_view(pool: ProxyPool, worker: VerifiedWorker) -> dict[str, Any] | None:
    """What the root says of one worker this client uses: listed, and staked."""
    follower = pool.follower
    if follower is None:
        return None
    stake = follower.cached_stake(worker.wallet, worker.public_key)
    return {
        "image": image_of(worker.verdict),
        "models": {m: model_hash_kind(m) for m in sorted(worker.models)},
        "wallet": worker.wallet or None,
        "stake_address": follower.stake_address(worker.wallet, worker.public_key)
        if worker.wallet
        else None,
        "stake_bonded_nano": None if stake is None else stake.bonded_nano,
        "stake_unbonding_nano": None if stake is None else stake.unbonding_nano,
        "minimum_stake_nano": follower.rules.minimum_stake("worker"),
    }
