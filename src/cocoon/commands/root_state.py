"""The root's state as `cocoon root` reads, changes and shows it.

Reading is one get-method call; a change is one owner update sent from the key
file's wallet, after which the root is read again to show the new version. The
state is shown as JSON (``--json``) or as lines for people.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .common import chain_endpoint, emit, format_ton, load_key, run
from .root_args import RootTarget, owner_key_file, root_of

if TYPE_CHECKING:
    from ..chain.root import RegisteredProxy, RootParams, RootState


# -- showing ----------------------------------------------------------------------------


def _params_lines(p: RootParams) -> list[str]:
    return [
        f"base price: {p.base_price_nano} nanotons/token",
        f"multipliers: prompt {p.prompt_bp} bp, cached {p.cached_bp} bp,"
        f" completion {p.completion_bp} bp, reasoning {p.reasoning_bp} bp",
        f"proxy commission: {p.commission_bp} bp",
        f"close delays: client {p.client_close_delay} s, worker {p.worker_close_delay} s",
        f"minimum deposits: client {format_ton(p.min_client_deposit)} TON,"
        f" proxy {format_ton(p.min_proxy_deposit)} TON",
        f"minimum stakes: worker {format_ton(p.min_worker_stake)} TON,"
        f" proxy {format_ton(p.min_proxy_stake)} TON",
        f"unbonding delay: {p.unbonding_delay} s",
        "trust tiers: "
        + ", ".join(
            f"{t} {p.tier_bp(t)} bp" for t in ("tee", "gpu", "audited", "replicated", "region")
        ),
    ]


def _list_lines(title: str, items: list[str]) -> list[str]:
    if not items:
        return [f"{title}: none"]
    return [f"{title} ({len(items)}):", *(f"  {i}" for i in items)]


def _proxy_json(p: RegisteredProxy) -> dict[str, str]:
    return {"wallet": p.wallet, "endpoint": p.endpoint, "node_key": p.node_key.hex()}


def state_json(root: str, s: RootState) -> dict[str, Any]:
    return {
        "root": root,
        "version": s.version,
        "network_id": s.network_id,
        "owner": s.owner,
        "params": {f.name: getattr(s.params, f.name) for f in fields(s.params)},
        "proxy_images": sorted(s.proxy_images),
        "worker_images": sorted(s.worker_images),
        "models": sorted(s.models),
        "proxies": [_proxy_json(p) for p in s.proxies],
        "slashing": {
            "dispute_delay": s.slashing.dispute_delay,
            "quorum": s.slashing.quorum,
            "verifiers": sorted(k.hex() for k in s.slashing.verifiers),
        },
    }


def _state_lines(root: str, s: RootState) -> list[str]:
    proxies = [f"{p.wallet}  {p.endpoint}  node key {p.node_key.hex()}" for p in s.proxies]
    return [
        f"root: {root}",
        f"owner: {s.owner}",
        f"network id: {s.network_id}",
        f"version: {s.version}",
        *_params_lines(s.params),
        *_list_lines("proxy images", sorted(s.proxy_images)),
        *_list_lines("worker images", sorted(s.worker_images)),
        *_list_lines("models", sorted(s.models)),
        *_list_lines("proxies", proxies),
        f"slashing: dispute delay {s.slashing.dispute_delay} s, quorum {s.slashing.quorum}",
        *_list_lines("verifiers", sorted(k.hex() for k in s.slashing.verifiers)),
    ]


# -- running ----------------------------------------------------------------------------


def read_root(target: RootTarget, as_json: bool) -> None:
    from ..chain.root import read_root_state
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        root = root_of(target.root)
        async with TonCenterClient(chain_endpoint(target.endpoint), target.api_key) as client:
            state = await read_root_state(client, root)
        emit(as_json, state_json(root, state), _state_lines(root, state))

    run(main)


def update_root(
    target: RootTarget,
    as_json: bool,
    body_of: Callable[[RootState, int], Any],
    said: Callable[[RootState], str],
) -> None:
    """Read the root, send the owner update ``body_of(state, query_id)`` from the key
    file's wallet, read the root again; print ``said(new state)`` and the new version."""
    from ..chain.root import read_root_state, send_root_update
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import open_wallet

    async def main() -> None:
        root = root_of(target.root)
        key = load_key(owner_key_file(target.key_file))
        async with TonCenterClient(chain_endpoint(target.endpoint), target.api_key) as client:
            state = await read_root_state(client, root)
            # A fresh query id makes the body unique, so its transaction can be found.
            body = body_of(state, secrets.randbits(64))
            wallet = await open_wallet(client, key, target.wallet_version)
            await send_root_update(wallet, root, body)
            after = await read_root_state(client, root)
        obj = state_json(root, after)
        emit(as_json, obj, [f"{said(after)}; root version {after.version}"])

    run(main)
