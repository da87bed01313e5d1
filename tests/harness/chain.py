"""What tests of the local chain need: Node and the contracts' npm packages."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cocoon.chain.local import LocalChain, LocalChainClient, contracts_dir
from cocoon.chain.wallet import WalletV4, key_from_mnemonic, new_mnemonic

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


async def funded_wallet(client: LocalChainClient, amount: int) -> WalletV4:
    """A new wallet (fresh mnemonic) given `amount` nanotons from the faucet."""
    wallet = WalletV4(client, key_from_mnemonic(new_mnemonic()))
    await client.faucet(wallet.raw_address, amount)
    return wallet
