"""The stake contract from Python: cells offline; deposit, unbond, withdraw after the delay,
slash, refusals and ensure_stake(s) on the local chain."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Address

from cocoon.chain.local import LocalChainClient
from cocoon.chain.stake import (
    FEE_CONTROL,
    FEE_DEPOSIT,
    MAX_UNBOND_DELAY,
    StakeErr,
    StakeNotDeployed,
    StakeOp,
    StakeRefused,
    StakeState,
    deposit_body,
    deposit_stake,
    ensure_stake,
    ensure_stakes,
    read_stake,
    read_stake_params,
    request_unbond,
    request_unbond_body,
    slash_body,
    stake_address,
    stake_data,
    stake_init,
    withdraw_body,
    withdraw_stake,
)
from cocoon.chain.transactions import body_hash_b64, tx_outcome, wait_for_tx
from cocoon.chain.wallet import InternalMessage, WalletV4
from harness.chain import funded_wallet

from .marks import needs_local_chain

TON = 1_000_000_000
NETWORK = 42
DELAY = 600
ROOT = "0:" + "01" * 32
OWNER = "0:" + "02" * 32


def _node_key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw()


# -- offline ----------------------------------------------------------------------------


def test_init_data_layout_and_address() -> None:
    key = bytes(range(32))
    s = stake_data(NETWORK, ROOT, OWNER, key).begin_parse()
    assert [s.load_coins(), s.load_coins(), s.load_uint(32), s.load_uint(32), s.load_coins()] == [
        0,
        0,
        0,
        0,
        0,
    ]
    p = s.load_ref().begin_parse()
    assert p.load_int(32) == NETWORK
    assert p.load_address() == Address(ROOT) and p.load_address() == Address(OWNER)
    assert p.load_bytes(32) == key
    addr = stake_address(NETWORK, ROOT, OWNER, key)
    assert addr.startswith("0:") and addr == stake_address(NETWORK, ROOT, OWNER, bytes(key))
    assert Address(addr) == stake_init(NETWORK, ROOT, OWNER, key)[2]
    # Each fixed parameter names another stake: nobody can claim another node's.
    others = [
        stake_address(NETWORK + 1, ROOT, OWNER, key),
        stake_address(NETWORK, OWNER, OWNER, key),
        stake_address(NETWORK, ROOT, ROOT, key),
        stake_address(NETWORK, ROOT, OWNER, bytes(32)),
    ]
    assert addr not in others and len(set(others)) == 4
    with pytest.raises(ValueError, match="32-byte"):
        stake_address(NETWORK, ROOT, OWNER, b"short")


def test_bodies() -> None:
    s = deposit_body(3600, query_id=7).begin_parse()
    assert (s.load_uint(32), s.load_uint(64), s.load_uint(32)) == (StakeOp.DEPOSIT, 7, 3600)
    s = request_unbond_body(123).begin_parse()
    assert (s.load_uint(32), s.load_uint(64), s.load_coins()) == (StakeOp.REQUEST_UNBOND, 0, 123)
    assert withdraw_body().begin_parse().load_uint(32) == StakeOp.WITHDRAW
    s = slash_body(5, OWNER, query_id=1).begin_parse()
    assert (s.load_uint(32), s.load_uint(64), s.load_coins()) == (StakeOp.SLASH, 1, 5)
    assert s.load_address() == Address(OWNER) and s.remaining_bits == 0


def test_refusal_carries_code_and_meaning() -> None:
    e = StakeRefused("withdraw", OWNER, StakeErr.TOO_EARLY)
    assert e.exit_code == 308 and "unbonding delay" in e.meaning and "exit code 308" in str(e)
    assert StakeNotDeployed("unbond", OWNER).exit_code == -1


# -- on the local chain -----------------------------------------------------------------


async def _now(client: LocalChainClient) -> int:
    return await client.advance(0)


async def _slash(sender: WalletV4, address: str, amount: int, beneficiary: str) -> int:
    """The root's part (its slashing is the next issue): a slash sent from ``sender``;
    the exit code of the stake's transaction."""
    client = sender.client
    body = slash_body(amount, beneficiary, query_id=secrets.randbits(64))
    after = (await client.get_address_information(address)).last_transaction_id.lt
    await sender.send([InternalMessage(address, FEE_CONTROL, body=body)])
    tx = await wait_for_tx(
        client, address, after, sender.address, body_hash_b64(body), time.monotonic() + 20
    )
    assert tx is not None
    return tx_outcome(tx).exit_code


@needs_local_chain
async def test_stake_life(client: LocalChainClient) -> None:
    owner = await funded_wallet(client, 30 * TON)
    root = await funded_wallet(client, 2 * TON)  # stands in for the root contract
    stranger = await funded_wallet(client, 2 * TON)
    key = _node_key()
    address = stake_address(NETWORK, root.raw_address, owner.raw_address, key)

    assert await read_stake(client, address) == StakeState(0, 0, 0, 0, 0, 0, active=False)
    assert await read_stake_params(client, address) is None
    with pytest.raises(StakeNotDeployed):
        await request_unbond(owner, address, TON)
    with pytest.raises(StakeNotDeployed):
        await withdraw_stake(owner, address)

    got = await deposit_stake(
        owner,
        network_id=NETWORK,
        authority=root.raw_address,
        node_key=key,
        amount_nano=5 * TON,
        unbond_delay=DELAY,
    )
    assert got == address
    st = await read_stake(client, address)
    assert st.active and (st.bonded_nano, st.unbonding_nano, st.unbond_delay) == (5 * TON, 0, DELAY)
    assert 5 * TON < st.balance_nano <= 5 * TON + FEE_DEPOSIT
    params = await read_stake_params(client, address)
    assert params is not None and params.node_key == key and params.network_id == NETWORK
    assert (params.authority, params.owner) == (root.raw_address, owner.raw_address)

    # A second deposit adds exactly its amount; a lower delay does not shorten the stored one.
    await deposit_stake(
        owner,
        network_id=NETWORK,
        authority=root.raw_address,
        node_key=key,
        amount_nano=TON + 1,
        unbond_delay=60,
    )
    st = await read_stake(client, address)
    assert (st.bonded_nano, st.unbond_delay) == (6 * TON + 1, DELAY)

    with pytest.raises(StakeRefused) as e:
        await request_unbond(owner, address, 7 * TON)
    assert e.value.exit_code == StakeErr.OVER_BONDED and "more than is bonded" in e.value.meaning
    with pytest.raises(StakeRefused) as e:
        await request_unbond(owner, address, 0)
    assert e.value.exit_code == StakeErr.ZERO_AMOUNT
    with pytest.raises(StakeRefused) as e:
        await request_unbond(stranger, address, TON)
    assert e.value.exit_code == StakeErr.NOT_OWNER
    with pytest.raises(StakeRefused) as e:
        await withdraw_stake(owner, address)
    assert e.value.exit_code == StakeErr.NOTHING_UNBONDING

    await request_unbond(owner, address, 2 * TON)
    now = await _now(client)
    st = await read_stake(client, address)
    assert (st.bonded_nano, st.unbonding_nano, st.unlock_at) == (4 * TON + 1, 2 * TON, now + DELAY)
    with pytest.raises(StakeRefused) as e:
        await withdraw_stake(owner, address)
    assert e.value.exit_code == StakeErr.TOO_EARLY and e.value.op == "withdraw"

    await client.advance(DELAY - 1)
    with pytest.raises(StakeRefused) as e:
        await withdraw_stake(owner, address)
    assert e.value.exit_code == StakeErr.TOO_EARLY
    await client.advance(1)
    before = await owner.balance()
    await withdraw_stake(owner, address)
    gained = await owner.balance() - before
    # 2 TON back, less the wallet's and the stake's fees for this one withdrawal
    assert 2 * TON - TON // 50 < gained < 2 * TON, gained
    st = await read_stake(client, address)
    assert (st.bonded_nano, st.unbonding_nano) == (4 * TON + 1, 0)

    # The authority slashes bonded first, then unbonding; the beneficiary is paid.
    await request_unbond(owner, address, TON)
    paid_before = await stranger.balance()
    assert await _slash(root, address, 4 * TON, stranger.raw_address) == 0
    st = await read_stake(client, address)
    # 3 TON + 1 from bonded, TON - 1 from unbonding
    assert (st.bonded_nano, st.unbonding_nano, st.slashed_nano) == (0, 1, 4 * TON)
    assert await stranger.balance() - paid_before > 4 * TON - FEE_CONTROL
    # Only the authority slashes.
    assert await _slash(owner, address, 1, owner.raw_address) == StakeErr.NOT_AUTHORITY


@needs_local_chain
async def test_ensure_stake_is_idempotent(client: LocalChainClient) -> None:
    owner = await funded_wallet(client, 30 * TON)
    key = _node_key()
    kw: dict[str, Any] = {"network_id": NETWORK, "authority": ROOT, "node_key": key}

    address = await ensure_stake(owner, **kw, minimum_nano=3 * TON, unbond_delay=DELAY)
    st = await read_stake(client, address)
    assert (st.bonded_nano, st.unbond_delay) == (3 * TON, DELAY)
    seqno = await owner.seqno()
    # Already staked enough: a re-run sends nothing.
    assert await ensure_stake(owner, **kw, minimum_nano=3 * TON, unbond_delay=DELAY) == address
    assert await ensure_stake(owner, **kw, minimum_nano=TON, unbond_delay=60) == address
    assert await owner.seqno() == seqno
    # A higher minimum: exactly the difference. A longer delay alone: a deposit of 0.
    await ensure_stake(owner, **kw, minimum_nano=5 * TON, unbond_delay=DELAY)
    assert (await read_stake(client, address)).bonded_nano == 5 * TON
    await ensure_stake(owner, **kw, minimum_nano=5 * TON, unbond_delay=2 * DELAY)
    st = await read_stake(client, address)
    assert (st.bonded_nano, st.unbond_delay) == (5 * TON, 2 * DELAY)
    assert await owner.seqno() == seqno + 2

    # Several nodes at once, each with its wallet (one shares a wallet: serialised by it).
    other = await funded_wallet(client, 10 * TON)
    keys = [_node_key() for _ in range(3)]
    addresses = await ensure_stakes(
        [(owner, keys[0]), (other, keys[1]), (owner, keys[2])],
        network_id=NETWORK,
        authority=ROOT,
        minimum_nano=2 * TON,
        unbond_delay=DELAY,
    )
    assert addresses == [
        stake_address(NETWORK, ROOT, w.raw_address, k)
        for w, k in [(owner, keys[0]), (other, keys[1]), (owner, keys[2])]
    ]
    for a in addresses:
        st = await read_stake(client, a)
        assert st.active and st.bonded_nano == 2 * TON

    with pytest.raises(ValueError, match="unbond delay"):
        await ensure_stake(owner, **kw, minimum_nano=TON, unbond_delay=MAX_UNBOND_DELAY + 1)
