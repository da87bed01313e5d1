"""What a client shows of its trust in the network: `/v1/attestation`.

The proxy in use and every proxy held, the workers the client verified (each
with its evidence and what the root says of it: listed, staked), the root as
the client follows it, and what it refused and why.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..registry.rules import image_of, model_hash_kind
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
        "proxies": pool.proxies_status(),
        "root": None
        if pool.follower is None
        else pool.follower.status(images_enforced=pool.credentials.provider != "none"),
        "refused_workers": dict(pool.verifier.refused),
        "refused_proxy_connections": pool.proxy_refusals(),
        "payments": pool.payments_status(),
    }


def _worker(pool: ProxyPool, w: VerifiedWorker) -> dict[str, Any]:
    return {
        "key_id": w.key_id,
        "models": sorted(w.models),
        "coefficient_milli": w.coefficient_milli,
        "trusted": w.verdict.trusted,
        "attestation": w.verdict.reason,
        "provider": w.verdict.provider,
        "measurements": w.verdict.measurements,
        "hpke_suite": w.recipient.suite,
        "root": _root_view(pool, w),
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
