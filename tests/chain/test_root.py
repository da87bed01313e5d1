"""The root contract from Python: cells and prices offline; deploy, read and SetParams on
the local chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.channel import ChannelConfig, channel_init, raw_address
from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import (
    ROOT_FEE_UPDATE,
    BadRootAnswer,
    RootConfig,
    RootErr,
    RootNotDeployed,
    RootParams,
    deploy_root,
    read_root,
    root_init,
    set_params_body,
)
from cocoon.chain.wallet import InternalMessage, WalletV4, key_from_mnemonic, new_mnemonic
from cocoon.pricing import Prices, price_nano
from harness.chain import NEEDS_LOCAL_CHAIN

F = TypeVar("F", bound=Callable[..., Any])
TON = 1_000_000_000
NETWORK = 42


def needs_local_chain(f: F) -> F:
    for mark in NEEDS_LOCAL_CHAIN:
        f = mark(f)
    return f


def test_prices_convert_basis_points_exactly() -> None:
    p = RootParams()
    assert p.prices() == Prices(
        base_nano_per_token=1_000,
        prompt_milli=1_000,
        cached_prompt_milli=100,
        completion_milli=4_000,
        reasoning_milli=4_000,
    )
    # The defaults are the pricing module's defaults: same price for the same request.
    usage = dict(prompt_tokens=100, cached_prompt_tokens=30, completion_tokens=50)
    assert price_nano(p.prices(), **usage, reasoning_tokens=7, coefficient_milli=1500) == (
        price_nano(Prices(), **usage, reasoning_tokens=7, coefficient_milli=1500)
    )
    with pytest.raises(ValueError, match="not divisible by 10"):
        RootParams(cached_bp=1_005).prices()


def test_params_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="commission_bp"):
        RootParams(commission_bp=70_000)
    with pytest.raises(ValueError, match="prompt_bp"):
        RootParams(prompt_bp=-1)


def test_root_address_depends_on_owner_network_and_params() -> None:
    owner = "0:" + "11" * 32
    a = root_init(owner, NETWORK, RootParams())[2]
    assert a == root_init(owner, NETWORK, RootParams())[2]
    assert a != root_init(owner, NETWORK + 1, RootParams())[2]
    assert a != root_init(owner, NETWORK, RootParams(base_price_nano=2))[2]


async def _last_exit_code(c: LocalChainClient, address: str) -> int | None:
    return (await c.get_transactions(address, 1))[0].compute_exit_code


@needs_local_chain
async def test_deploy_read_and_set_params(client: LocalChainClient) -> None:
    c = client
    owner = WalletV4(c, key_from_mnemonic(new_mnemonic()))
    await c.faucet(owner.raw_address, 5 * TON)
    params = RootParams(base_price_nano=2_000, commission_bp=500, client_close_delay=60)

    root = await deploy_root(c, owner.address, NETWORK, params)
    assert root == raw_address(root_init(owner.address, NETWORK, params)[2])
    assert await read_root(c, root) == RootConfig(version=0, network_id=NETWORK, params=params)
    # Deploying again changes nothing (and costs nothing).
    balance = await c.get_balance(root)
    assert await deploy_root(c, owner.address, NETWORK, params) == root
    assert await c.get_balance(root) == balance

    # The owner changes prices: the version moves, the new prices are read back.
    new = RootParams(base_price_nano=3_000, completion_bp=50_000, worker_close_delay=120)
    await owner.send([InternalMessage(root, ROOT_FEE_UPDATE, body=set_params_body(new, 7))])
    assert await _last_exit_code(c, root) == 0
    cfg = await read_root(c, root)
    assert cfg == RootConfig(version=1, network_id=NETWORK, params=new)
    assert cfg.params.prices().completion_milli == 5_000

    # Anyone else is refused and nothing changes.
    stranger = WalletV4(c, Ed25519PrivateKey.generate())
    await c.faucet(stranger.raw_address, TON)
    await stranger.send([InternalMessage(root, ROOT_FEE_UPDATE, body=set_params_body(params))])
    assert await _last_exit_code(c, root) == RootErr.NOT_OWNER
    assert (await read_root(c, root)).version == 1


@needs_local_chain
async def test_read_root_of_nothing_is_a_typed_error(client: LocalChainClient) -> None:
    with pytest.raises(RootNotDeployed):
        await read_root(client, "0:" + "ab" * 32)
    # A contract that is not a root (a channel) has no config() to answer.
    cfg = ChannelConfig(NETWORK, 1, "0:" + "01" * 32, "0:" + "02" * 32, bytes(32), 60)
    code, data, _ = channel_init(cfg)
    d = await client.deploy(code.to_boc(), data.to_boc(), TON)
    with pytest.raises(BadRootAnswer, match="exited with code"):
        await read_root(client, d["raw_address"])
