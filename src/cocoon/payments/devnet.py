"""Payments for `cocoon up`: the root on the local chain and a funded wallet per node.

Everything is kept under the network's data folder, so a second `cocoon up`
finds the same root, wallets and channels (and their balances) on the same
persisted chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..chain.local import LocalChainClient
from ..chain.root import RootParams, deploy_root
from ..chain.wallet import WalletV4, load_key_file, new_mnemonic, save_key_file

TON = 1_000_000_000
# The local network's id on chain (vouchers and channels carry it).
LOCAL_NETWORK_ID = 42
# What each wallet is topped up to from the faucet when it runs below half of it.
FUNDING = {"owner": 10 * TON, "proxy": 200 * TON, "worker": 20 * TON, "client": 200 * TON}


@dataclass(frozen=True)
class NodeWallet:
    name: str
    key_file: Path
    address: str


def _key_file(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_key_file(path, new_mnemonic())
    return path


async def fund(client: LocalChainClient, key_file: Path, name: str, amount: int) -> NodeWallet:
    """The wallet of `key_file` (created if missing), topped up from the faucet."""
    wallet = WalletV4(client, load_key_file(key_file))
    if await wallet.balance() < amount // 2:
        await client.faucet(wallet.raw_address, amount)
    return NodeWallet(name, key_file, wallet.raw_address)


async def prepare(
    client: LocalChainClient, data_dir: Path, nodes: list[str], params: RootParams | None = None
) -> tuple[str, dict[str, NodeWallet]]:
    """Deploy the root (owned by a local owner wallet) and fund a wallet for each node.

    `nodes` are names like "proxy", "worker1", "client"; returns the root address
    and each node's wallet."""
    owner = await fund(client, _key_file(data_dir / "owner.key"), "owner", FUNDING["owner"])
    root = await deploy_root(client, owner.address, LOCAL_NETWORK_ID, params or RootParams())
    wallets = {}
    for name in nodes:
        kind = re.sub(r"[^a-z].*", "", name)
        key_file = _key_file(data_dir / name / "wallet.key")
        wallets[name] = await fund(client, key_file, name, FUNDING.get(kind, 10 * TON))
    return root, wallets
