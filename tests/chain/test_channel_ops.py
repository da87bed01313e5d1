"""ChannelOps: every channel operation on the local chain, with the contract's refusals typed."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.channel import ChannelConfig, ChannelErr
from cocoon.chain.local import LocalChainClient
from cocoon.chain.ops import ChannelNotDeployed, ChannelOps, ChannelTxError
from cocoon.chain.wallet import WalletV4
from cocoon.payments.vouchers import SignedVoucher, Voucher, sign_voucher
from harness.chain import NEEDS_LOCAL_CHAIN, funded_wallet

pytestmark = NEEDS_LOCAL_CHAIN

TON = 1_000_000_000
NETWORK = 7
DELAY = 600


def _config(
    payer: WalletV4, payee: WalletV4, key: Ed25519PrivateKey, cid: int = 1
) -> ChannelConfig:
    return ChannelConfig(
        network_id=NETWORK,
        channel_id=cid,
        payer=payer.address,
        payee=payee.address,
        payer_key=key.public_key().public_bytes_raw(),
        close_delay=DELAY,
    )


async def test_channel_life_through_ops(client: LocalChainClient) -> None:
    c = client
    payer = await funded_wallet(c, 20 * TON)
    payee = await funded_wallet(c, 2 * TON)
    key = Ed25519PrivateKey.generate()
    cfg = _config(payer, payee, key)
    by_payer = ChannelOps(c, payer, cfg, confirm_timeout_s=20)
    by_payee = ChannelOps(c, payee, cfg, confirm_timeout_s=20)
    assert by_payer.address == by_payee.address
    assert await by_payer.state() is None and await by_payer.params() is None

    # Before deploy: redeem and top-up say "not deployed" (the top-up bounces back).
    v1 = sign_voucher(key, Voucher(by_payee.address, 1, TON), NETWORK)
    with pytest.raises(ChannelNotDeployed):
        await by_payee.redeem(v1)
    with pytest.raises(ChannelNotDeployed):
        await by_payer.top_up(TON)

    assert await by_payer.deploy(3 * TON) is True
    assert await by_payer.deploy(3 * TON) is False  # already deployed: nothing sent
    st = await by_payer.state()
    assert st is not None and (st.deposit, st.redeemed, st.seqno) == (3 * TON, 0, 0)
    params = await by_payee.params()
    assert params is not None and params.payer == payer.address and params.close_delay == DELAY

    await by_payer.top_up(2 * TON)
    assert (await by_payer.state()).deposit == 5 * TON  # type: ignore[union-attr]

    payee_before = await payee.balance()
    assert await by_payee.redeem(v1) == TON
    assert await by_payee.redeem(v1) == 0  # not above what was redeemed: no transaction
    v3 = sign_voucher(key, Voucher(by_payee.address, 3, 3 * TON + 5), NETWORK)
    assert await by_payee.redeem(v3) == 2 * TON + 5
    assert TON * 3 - TON // 10 < await payee.balance() - payee_before <= 3 * TON + 5

    # Refusals carry the contract's exit code and its meaning.
    with pytest.raises(ChannelTxError) as e:
        await by_payer.withdraw()
    assert e.value.exit_code == ChannelErr.NOT_CLOSING and "before close" in e.value.meaning
    bad = SignedVoucher(Voucher(by_payee.address, 4, 4 * TON), NETWORK, v3.signature)
    with pytest.raises(ChannelTxError) as e:
        await by_payee.redeem(bad)
    assert e.value.exit_code == ChannelErr.BAD_SIGNATURE
    over = sign_voucher(key, Voucher(by_payee.address, 4, 6 * TON), NETWORK)
    with pytest.raises(ChannelTxError) as e:
        await by_payee.redeem(over)
    assert e.value.exit_code == ChannelErr.OVER_DEPOSIT
    # The payer's wallet is not the payee, and the other way round.
    v4 = sign_voucher(key, Voucher(by_payee.address, 4, 4 * TON), NETWORK)
    with pytest.raises(ChannelTxError) as e:
        await ChannelOps(c, payer, cfg).redeem(v4)
    assert e.value.exit_code == ChannelErr.NOT_PAYEE
    with pytest.raises(ChannelTxError) as e:
        await by_payee.close()
    assert e.value.exit_code == ChannelErr.NOT_PAYER
    with pytest.raises(ValueError, match="voucher for channel"):
        await by_payee.redeem(sign_voucher(key, Voucher("0:" + "00" * 32, 5, 5 * TON), NETWORK))

    await by_payer.close()
    with pytest.raises(ChannelTxError) as e:
        await by_payer.close()
    assert e.value.exit_code == ChannelErr.ALREADY_CLOSING
    with pytest.raises(ChannelTxError) as e:
        await by_payer.withdraw()
    assert e.value.exit_code == ChannelErr.TOO_EARLY == 213
    assert "close delay" in str(e.value)
    assert await by_payee.redeem(v4) == TON - 5  # the payee may still redeem during the delay

    await c.advance(DELAY + 1)
    payer_before = await payer.balance()
    await by_payer.withdraw()
    st = await by_payer.state()
    assert st is not None and (st.deposit, st.redeemed, st.balance) == (4 * TON + 0, 4 * TON, 0)
    refund = await payer.balance() - payer_before
    assert TON - TON // 10 < refund < TON + TON // 10


async def test_one_wallet_many_channels_concurrently(client: LocalChainClient) -> None:
    """Sends from one wallet are serialised (shared seqno); every operation lands."""
    c = client
    payer = await funded_wallet(c, 50 * TON)
    payee = await funded_wallet(c, 2 * TON)
    key = Ed25519PrivateKey.generate()
    ops = [ChannelOps(c, payer, _config(payer, payee, key, cid)) for cid in range(4)]
    assert await asyncio.gather(*(o.deploy(TON) for o in ops)) == [True] * 4
    await asyncio.gather(*(o.top_up(TON * (i + 1)) for i, o in enumerate(ops)))
    deposits = [(await o.state()).deposit for o in ops]  # type: ignore[union-attr]
    assert deposits == [2 * TON, 3 * TON, 4 * TON, 5 * TON]
    assert await payer.seqno() == 8
