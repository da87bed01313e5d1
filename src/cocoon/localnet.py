"""The local network's root and stakes, as `cocoon up` sets them up.

On the local chain the root's owner is a wallet under the network's data
folder (payments/devnet.py). Here it lists what the network runs: this
build's simulated image (for proxies and workers) when attestation is on,
the models the workers serve, and the proxies `up` starts (endpoint, wallet,
node key). Every serving node stakes the root's minimum from its own wallet.
Each step reads the chain first and sends only what is missing, so a second
`cocoon up` on the same persisted chain sends nothing but what changed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from .chain.local import LocalChainClient
from .chain.root import (
    HashKind,
    RegisteredProxy,
    RootParams,
    read_root_state,
    send_root_update,
    set_hash_body,
    set_proxy_body,
)
from .chain.stake import ensure_stake
from .chain.wallet import WalletV4, load_key_file
from .crypto.identity import NodeIdentity
from .payments.devnet import LOCAL_NETWORK_ID, NodeWallet, prepare
from .registry.rules import model_hash


@dataclass(frozen=True)
class LocalRoot:
    """What `up` set up on the local chain."""

    root: str
    owner_key_file: Path
    wallets: dict[str, NodeWallet]


def node_key(data_dir: Path) -> bytes:
    """A node's identity key, created now if the node never ran (the node loads it)."""
    return NodeIdentity.load_or_create(data_dir).public_key


async def _govern(
    client: LocalChainClient,
    root: str,
    owner: WalletV4,
    *,
    images: list[str],
    models: list[str],
    proxies: list[RegisteredProxy],
) -> None:
    state = await read_root_state(client, root)
    bodies = []
    for image in images:
        if image not in state.proxy_images:
            bodies.append(set_hash_body(HashKind.PROXY_IMAGE, image, True))
        if image not in state.worker_images:
            bodies.append(set_hash_body(HashKind.WORKER_IMAGE, image, True))
    for model in models:
        if model_hash(model) not in state.models:
            bodies.append(set_hash_body(HashKind.MODEL, model_hash(model), True))
    wanted = {p.wallet: p for p in proxies}
    for registered in state.proxies:
        if registered.wallet not in wanted:
            # A proxy of an earlier run of this network: it is not coming back.
            bodies.append(set_proxy_body(registered.wallet, None))
    held = set(state.proxies)
    for proxy in proxies:
        if proxy not in held:
            bodies.append(set_proxy_body(proxy.wallet, proxy))
    for body in bodies:
        await send_root_update(owner, root, body)


async def set_up_root(
    client: LocalChainClient,
    data_dir: Path,
    nodes: list[str],
    *,
    images: list[str],
    models: list[str],
    proxy_endpoints: dict[str, str],
    params: RootParams | None = None,
) -> LocalRoot:
    """Deploy and fund (devnet.prepare), then list images and models, register the
    proxies (name → endpoint) and stake every proxy and worker."""
    root, wallets = await prepare(client, data_dir, nodes, params)
    owner_key = data_dir / "owner.key"
    owner = WalletV4(client, load_key_file(owner_key))
    keys = {
        name: node_key(data_dir / name) for name in nodes if name.startswith(("proxy", "worker"))
    }
    proxies = [
        RegisteredProxy(wallets[name].address, endpoint, keys[name])
        for name, endpoint in proxy_endpoints.items()
    ]
    await _govern(client, root, owner, images=images, models=models, proxies=proxies)
    state = await read_root_state(client, root)
    minimum = {
        "proxy": state.params.min_proxy_stake,
        "worker": state.params.min_worker_stake,
    }

    async def stake(name: str) -> None:
        wallet = WalletV4(client, load_key_file(wallets[name].key_file))
        role = "proxy" if name.startswith("proxy") else "worker"
        await ensure_stake(
            wallet,
            network_id=LOCAL_NETWORK_ID,
            authority=root,
            node_key=keys[name],
            minimum_nano=minimum[role],
            unbond_delay=state.params.unbonding_delay,
        )

    # Each from its own wallet: they need not wait for one another.
    await asyncio.gather(*(stake(name) for name in keys))
    return LocalRoot(root, owner_key, wallets)
