"""What tests of the local chain need: Node and the contracts' npm packages."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cocoon.chain.local import LocalChain, LocalChainClient, contracts_dir
from cocoon.chain.wallet import WalletV4, key_from_mnemonic, new_mnemonic
from cocoon.config import PaymentsConfig
from cocoon.payments.devnet import prepare
from harness.network import InProcessNetwork

# A node's payment settings by name ("proxy", "worker1", "client"), with overrides.
Settings = Callable[..., PaymentsConfig]

CONTRACTS = contracts_dir()
HAVE_NODE = shutil.which("node") is not None
HAVE_MODULES = (CONTRACTS / "node_modules" / "@ton" / "sandbox").is_dir()

# pytestmark of every module that starts a local chain.
NEEDS_LOCAL_CHAIN = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (HAVE_NODE and HAVE_MODULES),
        reason="the local chain needs Node and contracts/node_modules "
        "(run ./scripts/test or `npm ci --prefix contracts`)",
    ),
]


@asynccontextmanager
async def local_chain_client(data_dir: Path) -> AsyncIterator[LocalChainClient]:
    """A local chain in `data_dir` (manual clock) and a client of it, for one test."""
    async with LocalChain(data_dir) as chain, chain.client() as client:
        yield client


@asynccontextmanager
async def paid_network(tmp_path: Path) -> AsyncIterator[tuple[InProcessNetwork, Settings]]:
    """An in-process network (nothing started yet) on a local chain whose root lists
    it, with funded wallets for a proxy, `worker1` and a client, and the payment
    settings of each."""
    async with LocalChain(tmp_path / "chain") as chain:
        client = chain.client()
        try:
            root, wallets = await prepare(client, tmp_path, ["proxy", "worker1", "client"])
        finally:
            await client.close()

        def settings(name: str, **overrides: object) -> PaymentsConfig:
            return PaymentsConfig(
                chain_endpoint=chain.endpoint,
                root=root,
                key_file=str(wallets[name].key_file),
                **overrides,  # type: ignore[arg-type]
            )

        network = InProcessNetwork(tmp_path)
        try:
            yield network, settings
        finally:
            await network.stop()


async def funded_wallet(client: LocalChainClient, amount: int) -> WalletV4:
    """A new wallet (fresh mnemonic) given `amount` nanotons from the faucet."""
    wallet = WalletV4(client, key_from_mnemonic(new_mnemonic()))
    await client.faucet(wallet.raw_address, amount)
    return wallet
