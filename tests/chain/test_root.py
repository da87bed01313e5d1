"""The root contract from Python: cells and prices offline; deploy, read, and every owner
update (with its refusals) on the local chain."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.channel import ChannelConfig, channel_init, raw_address
from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import (
    ROOT_FEE_UPDATE,
    BadRootAnswer,
    HashKind,
    RegisteredProxy,
    RootConfig,
    RootErr,
    RootNotDeployed,
    RootParams,
    RootSlashing,
    RootState,
    RootUpdateRefused,
    deploy_root,
    deploy_root_from_wallet,
    parse_proxy_entry,
    proxy_entry_cell,
    read_root,
    read_root_state,
    read_root_version,
    root_init,
    send_root_update,
    set_hash_body,
    set_owner_body,
    set_params_body,
    set_proxy_body,
)
from cocoon.chain.wallet import InternalMessage, WalletV4, key_from_mnemonic, new_mnemonic
from cocoon.pricing import Prices, price_nano
from harness.chain import funded_wallet

from .marks import needs_local_chain

TON = 1_000_000_000
NETWORK = 42


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
    assert a != root_init(owner, NETWORK, RootParams(tier_region_bp=12_000))[2]


def test_market_defaults_and_tiers() -> None:
    p = RootParams()
    assert (p.min_worker_stake, p.min_proxy_stake, p.unbonding_delay) == (10 * TON, 10 * TON, 3600)
    tiers = ("tee", "gpu", "audited", "replicated", "region")
    assert [p.tier_bp(t) for t in tiers] == [10_000, 12_000, 15_000, 30_000, 11_000]
    with pytest.raises(ValueError, match="unknown trust tier"):
        p.tier_bp("gold")
    with pytest.raises(ValueError, match="min_worker_stake"):
        RootParams(min_worker_stake=-1)
    with pytest.raises(ValueError, match="tier_gpu_bp"):
        RootParams(tier_gpu_bp=2**32)


def test_bodies_refuse_what_the_root_cannot_hold() -> None:
    wallet = "0:" + "22" * 32
    with pytest.raises(ValueError, match="64 hex"):
        set_hash_body(HashKind.MODEL, "ab" * 31, True)
    with pytest.raises(ValueError, match="32 bytes"):
        RegisteredProxy(wallet, "p.example:443", bytes(31))
    with pytest.raises(ValueError, match="empty"):
        RegisteredProxy(wallet, "", bytes(32))
    other = RegisteredProxy("0:" + "33" * 32, "p.example:443", bytes(32))
    with pytest.raises(ValueError, match="given for wallet"):
        set_proxy_body(wallet, other)
    # The entry cell round-trips, a long endpoint included (it snakes over cells).
    entry = RegisteredProxy(wallet, "p" * 300 + ".example:443", bytes(range(32)))
    assert parse_proxy_entry(wallet, proxy_entry_cell(entry)) == entry


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


def _hex(n: int) -> str:
    return f"{n:02x}" * 32


@needs_local_chain
async def test_every_owner_update_and_the_whole_state(client: LocalChainClient) -> None:
    c = client
    owner = await funded_wallet(c, 10 * TON)
    params = RootParams(min_worker_stake=3 * TON, unbonding_delay=120, tier_gpu_bp=12_500)
    root = await deploy_root_from_wallet(owner, NETWORK, params)
    assert root == raw_address(root_init(owner.address, NETWORK, params)[2])
    assert await deploy_root_from_wallet(owner, NETWORK, params) == root  # already there
    empty = RootState(
        version=0,
        network_id=NETWORK,
        owner=owner.raw_address,
        params=params,
        proxy_images=frozenset(),
        worker_images=frozenset(),
        models=frozenset(),
        proxies=(),
        # the dispute window as applied: at most the unbonding delay
        slashing=RootSlashing(dispute_delay=120),
    )
    assert await read_root_state(c, root) == empty
    assert await read_root(c, root) == RootConfig(0, NETWORK, params)

    new = RootParams(base_price_nano=7, min_proxy_stake=0, unbonding_delay=0, tier_region_bp=1)
    await send_root_update(owner, root, set_params_body(new))
    assert await read_root_version(c, root) == 1
    await send_root_update(owner, root, set_hash_body(HashKind.PROXY_IMAGE, _hex(1), True))
    await send_root_update(owner, root, set_hash_body(HashKind.WORKER_IMAGE, _hex(2), True))
    await send_root_update(owner, root, set_hash_body(HashKind.WORKER_IMAGE, _hex(3), True, 1))
    await send_root_update(owner, root, set_hash_body(HashKind.MODEL, "AB" * 32, True))
    await send_root_update(owner, root, set_hash_body(HashKind.WORKER_IMAGE, _hex(3), False))
    p1, p2 = sorted(["0:" + "f1" * 32, "0:" + "01" * 32])
    e1 = RegisteredProxy(p1, "proxy1.example:8443", bytes(range(32)))
    e2 = RegisteredProxy(p2, "[::1]:9443", bytes(range(1, 33)))
    await send_root_update(owner, root, set_proxy_body(p2, e2))
    await send_root_update(owner, root, set_proxy_body(p1, e1))
    stranger = await funded_wallet(c, TON)
    await send_root_update(
        owner,
        root,
        set_proxy_body(
            stranger.raw_address,
            RegisteredProxy(stranger.raw_address, "gone.example:1", bytes(32 * [7])),
        ),
    )
    await send_root_update(owner, root, set_proxy_body(stranger.raw_address, None))
    state = await read_root_state(c, root)
    assert state == RootState(
        version=10,
        network_id=NETWORK,
        owner=owner.raw_address,
        params=new,
        proxy_images=frozenset({_hex(1)}),
        worker_images=frozenset({_hex(2)}),
        models=frozenset({"ab" * 32}),
        proxies=(e1, e2),
        slashing=RootSlashing(dispute_delay=0),
    )
    assert (await read_root(c, root)).params == new

    # Refusals carry the contract's exit code and its meaning; nothing changes.
    with pytest.raises(RootUpdateRefused, match=r"not the owner \(exit 102\)") as refused:
        await send_root_update(stranger, root, set_hash_body(HashKind.MODEL, _hex(9), True))
    assert refused.value.exit_code == RootErr.NOT_OWNER
    with pytest.raises(RootUpdateRefused, match=r"params out of range \(exit 105\)"):
        await send_root_update(owner, root, set_params_body(RootParams(tier_tee_bp=0)))
    with pytest.raises(RootUpdateRefused, match="exit 104"):
        await send_root_update(owner, root, set_hash_body(9, _hex(9), True))
    zero_key = RegisteredProxy(p1, "x.example:1", bytes(32))
    with pytest.raises(RootUpdateRefused, match=r"zero node key .*\(exit 106\)"):
        await send_root_update(owner, root, set_proxy_body(p1, zero_key))
    assert await read_root_state(c, root) == state

    # Ownership moves: the old owner is refused, the new one accepted.
    await send_root_update(owner, root, set_owner_body(stranger.raw_address))
    with pytest.raises(RootUpdateRefused, match="exit 102"):
        await send_root_update(owner, root, set_hash_body(HashKind.MODEL, _hex(9), True))
    await send_root_update(stranger, root, set_hash_body(HashKind.MODEL, _hex(9), True))
    state = await read_root_state(c, root)
    assert (state.owner, state.version) == (stranger.raw_address, 12)
    assert state.models == {"ab" * 32, _hex(9)}


@needs_local_chain
async def test_updates_to_no_root_are_refused_before_sending(client: LocalChainClient) -> None:
    owner = await funded_wallet(client, TON)
    with pytest.raises(RootNotDeployed):
        await send_root_update(owner, "0:" + "ab" * 32, set_owner_body(owner.raw_address))
    with pytest.raises(RootNotDeployed):
        await read_root_state(client, "0:" + "ab" * 32)
    with pytest.raises(RootNotDeployed):
        await read_root_version(client, "0:" + "ab" * 32)
