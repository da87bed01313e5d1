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
import functools
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .chain.local import LocalChainClient
from .chain.root import (
    HashKind,
    RegisteredProxy,
    RootParams,
    read_root_slashing,
    read_root_state,
    send_root_update,
    set_hash_body,
    set_proxy_body,
    set_slashing_body,
    set_verifier_body,
)
from .chain.stake import ensure_stake
from .chain.wallet import WalletV4, load_key_file
from .crypto.identity import NodeIdentity
from .payments.devnet import LOCAL_NETWORK_ID, NodeWallet, prepare
from .registry.rules import model_hash

# A local network's dispute window for slashes proposed by verifiers' verdicts: long
# enough to cancel one by hand (`cocoon root cancel-slash`), short enough to watch one
# land while trying it out.
LOCAL_DISPUTE_DELAY = 60


@dataclass(frozen=True)
class LocalRoot:
    """What `up` set up on the local chain."""

    root: str
    owner_key_file: Path
    wallets: dict[str, NodeWallet]


def _role(name: str) -> str:
    """ "worker2" → "worker": a node's role from its name (as `up` names them)."""
    return re.sub(r"[^a-z].*", "", name)


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
    verifiers: Sequence[bytes] = (),
    dispute_delay: int = LOCAL_DISPUTE_DELAY,
) -> None:
    state = await read_root_state(client, root)
    slashing = await read_root_slashing(client, root)
    bodies = []
    if slashing.dispute_delay != dispute_delay:
        bodies.append(set_slashing_body(dispute_delay, slashing.quorum))
    for key in verifiers:
        if key not in slashing.verifiers:
            bodies.append(set_verifier_body(key, True))
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
    local = LocalRoot(root, data_dir / "owner.key", wallets)
    await govern(
        client,
        local,
        data_dir,
        nodes,
        images=images,
        models=models,
        proxy_endpoints=proxy_endpoints,
    )
    return local


async def govern(
    client: LocalChainClient,
    local: LocalRoot,
    data_dir: Path,
    nodes: list[str],
    *,
    images: list[str],
    models: list[str],
    proxy_endpoints: dict[str, str],
    dispute_delay: int = LOCAL_DISPUTE_DELAY,
) -> None:
    """List images and models, register the proxies and stake every proxy and worker
    of a root that `prepare` deployed (each read first; only what is missing is sent)."""
    root, wallets, owner_key = local.root, local.wallets, local.owner_key_file
    owner = WalletV4(client, load_key_file(owner_key))
    keys = {
        name: node_key(data_dir / name) for name in nodes if name.startswith(("proxy", "worker"))
    }
    proxies = [
        RegisteredProxy(wallets[name].address, endpoint, keys[name])
        for name, endpoint in proxy_endpoints.items()
    ]
    # Every worker may judge the others' failed audits (it never judges its own).
    verifiers = [key for name, key in keys.items() if name.startswith("worker")]
    await _govern(
        client,
        root,
        owner,
        images=images,
        models=models,
        proxies=proxies,
        verifiers=verifiers,
        dispute_delay=dispute_delay,
    )
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


def payments_environment(
    endpoint: str, data_dir: Path, nodes: list[str]
) -> dict[str, dict[str, str]]:
    """Deploy the root and fund a wallet per node; COCOON_<ROLE>_PAYMENTS__* per node.

    The root is left empty, so the nodes do not follow it (payments only)."""

    async def main() -> tuple[str, dict[str, Path]]:
        client = LocalChainClient(endpoint)
        try:
            root, wallets = await prepare(client, data_dir, nodes)
        finally:
            await client.close()
        return root, {name: w.key_file for name, w in wallets.items()}

    root, keys = asyncio.run(main())
    out = _node_environment(endpoint, root, keys)
    for name, env in out.items():
        env[f"COCOON_{_role(name).upper()}_REGISTRY__FOLLOW"] = "false"
    return out


def _node_environment(
    endpoint: str, root: str, key_files: dict[str, Path]
) -> dict[str, dict[str, str]]:
    out = {}
    for name, key_file in key_files.items():
        prefix = f"COCOON_{_role(name).upper()}_PAYMENTS__"
        out[name] = {
            prefix + "CHAIN_ENDPOINT": endpoint,
            prefix + "ROOT": root,
            prefix + "KEY_FILE": str(key_file),
        }
    return out


def governed_environment(
    endpoint: str,
    data_dir: Path,
    nodes: list[str],
    *,
    images: list[str],
    models: list[str],
    proxy_endpoints: dict[str, str],
) -> tuple[str, dict[str, dict[str, str]]]:
    """The root that governs this network (images, models, proxies listed; every serving
    node staked), all of it done; the root's address and COCOON_<ROLE>_PAYMENTS__* per
    node."""
    root, env, governing = start_governed(
        endpoint,
        data_dir,
        nodes,
        images=images,
        models=models,
        proxy_endpoints=proxy_endpoints,
    )
    governing.join(GOVERN_TIMEOUT_S)
    return root, env


# Deploy, list, register and stake on the local chain: seconds, bounded generously.
GOVERN_TIMEOUT_S = 300.0


class Governing:
    """Work on the local chain, in a thread of its own while the nodes start."""

    def __init__(self, endpoint: str, work: Callable[[LocalChainClient], Awaitable[None]]) -> None:
        self._error: BaseException | None = None

        async def main() -> None:
            client = LocalChainClient(endpoint)
            try:
                await work(client)
            finally:
                await client.close()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # handed to whoever joins
                self._error = exc

        self._thread = threading.Thread(target=run, name="govern", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait for it; its error, if any, is raised here."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the local root was not set up in {timeout_s:.0f} s")
        if self._error is not None:
            raise self._error


def start_governed(
    endpoint: str,
    data_dir: Path,
    nodes: list[str],
    *,
    images: list[str],
    models: list[str],
    proxy_endpoints: dict[str, str],
    dispute_delay: int = LOCAL_DISPUTE_DELAY,
) -> tuple[str, dict[str, dict[str, str]], Governing]:
    """Deploy and fund now (the nodes need the root's address and their wallets), and
    govern in the background: nodes follow the root, so what lands after they start
    reaches them within a poll (on a warm start nothing is left to send)."""

    async def main() -> tuple[str, dict[str, NodeWallet]]:
        client = LocalChainClient(endpoint)
        try:
            return await prepare(client, data_dir, nodes)
        finally:
            await client.close()

    root, wallets = asyncio.run(main())
    local = LocalRoot(root, data_dir / "owner.key", wallets)
    governing = Governing(
        endpoint,
        functools.partial(
            govern,
            local=local,
            data_dir=data_dir,
            nodes=nodes,
            images=images,
            models=models,
            proxy_endpoints=proxy_endpoints,
            dispute_delay=dispute_delay,
        ),
    )
    keys = {name: w.key_file for name, w in wallets.items()}
    return root, _node_environment(endpoint, root, keys), governing
