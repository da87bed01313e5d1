"""Wallets, channels and Python-signed vouchers on the local chain (contracts/chain/server.mjs)."""

from __future__ import annotations

import asyncio
import base64
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Cell

from cocoon.chain import channel as ch
from cocoon.chain.local import LocalChainClient
from cocoon.chain.toncenter import Transaction
from cocoon.chain.wallet import InternalMessage, WalletV4
from cocoon.payments.vouchers import SignedVoucher, Voucher, sign_voucher
from harness.chain import NEEDS_LOCAL_CHAIN, funded_wallet

pytestmark = NEEDS_LOCAL_CHAIN

TON = 1_000_000_000
NETWORK = 7
DELAY = 600


async def _new_txs(
    c: LocalChainClient, address: str, after_lt: int, n: int = 1, timeout_s: float = 30.0
) -> list[Transaction]:
    """The account's transactions after ``after_lt``, oldest first, once there are ``n``
    (polled, bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        txs = [t for t in await c.get_transactions(address, 20) if t.transaction_id.lt > after_lt]
        if len(txs) >= n:
            return txs[::-1]
        assert time.monotonic() < deadline, f"no new transaction on {address} after lt {after_lt}"
        await asyncio.sleep(0.05)


async def _last_lt(c: LocalChainClient, address: str) -> int:
    return (await c.get_address_information(address)).last_transaction_id.lt


async def _call(
    c: LocalChainClient, wallet: WalletV4, channel: str, value: int, body: Cell, **kw: object
) -> int:
    """Send ``body`` to the channel from ``wallet``; the channel's compute exit code."""
    lt = await _last_lt(c, channel)
    await wallet.send([InternalMessage(channel, value, body=body, **kw)])  # type: ignore[arg-type]
    tx = (await _new_txs(c, channel, lt))[0]
    assert tx.in_msg is not None and tx.compute_exit_code is not None
    return tx.compute_exit_code


async def _state(c: LocalChainClient, channel: str) -> ch.ChannelState:
    return ch.decode_state(await c.run_get_method(channel, "state"))


def _redeem(sv: SignedVoucher) -> Cell:
    return ch.redeem_body(sv.cell(), sv.signature)


async def test_wallet_deploys_and_transfers(client: LocalChainClient) -> None:
    c = client
    a = await funded_wallet(c, 10 * TON)
    b = WalletV4(c, Ed25519PrivateKey.generate())
    assert not await a.is_deployed() and await a.seqno() == 0
    assert await a.send([InternalMessage(b.raw_address, TON, bounce=False)]) == 0
    assert await a.is_deployed() and await a.seqno() == 1
    assert await b.balance() == TON
    two = [InternalMessage(b.raw_address, TON, bounce=False)] * 2
    assert await a.send(two) == 1
    assert await a.seqno() == 2
    assert await b.balance() == 3 * TON
    spent = 10 * TON - await a.balance()
    assert 3 * TON < spent < 3 * TON + TON // 10  # the transfers plus fees


async def test_channel_lifecycle_with_python_vouchers(client: LocalChainClient) -> None:
    c = client
    payer = await funded_wallet(c, 20 * TON)
    payee = await funded_wallet(c, 2 * TON)
    payer_start, payee_start = await payer.balance(), await payee.balance()
    start_lt = max(await _last_lt(c, payer.raw_address), await _last_lt(c, payee.raw_address))
    voucher_key = Ed25519PrivateKey.generate()  # the payer's channel key (not its wallet key)
    cfg = ch.ChannelConfig(
        network_id=NETWORK,
        channel_id=1,
        payer=payer.address,
        payee=payee.address,
        payer_key=voucher_key.public_key().public_bytes_raw(),
        close_delay=DELAY,
    )
    code, data, addr = ch.channel_init(cfg)
    channel = ch.raw_address(addr)

    # Deploy = the payer's first top-up, with the state init in the internal message.
    deposit = 5 * TON
    code_ = await _call(
        c, payer, channel, deposit + ch.FEE_TOPUP, ch.top_up_body(deposit), init=(code, data)
    )
    assert code_ == 0
    assert (await _state(c, channel)).deposit == deposit
    params = ch.decode_params(await c.run_get_method(channel, "params"))
    assert params.payer == payer.address and params.payee == payee.address
    assert (params.network_id, params.close_delay) == (NETWORK, DELAY)

    v1 = sign_voucher(voucher_key, Voucher(channel, 1, TON), NETWORK)
    assert await _call(c, payee, channel, ch.FEE_REDEEM, _redeem(v1)) == 0
    st = await _state(c, channel)
    assert (st.redeemed, st.seqno) == (TON, 1)

    # Refusals, each with the contract's exit code; the state does not move.
    v2 = sign_voucher(voucher_key, Voucher(channel, 2, 2 * TON), NETWORK)
    tampered = SignedVoucher(Voucher(channel, 2, 3 * TON), NETWORK, v2.signature)
    assert (
        await _call(c, payee, channel, ch.FEE_REDEEM, _redeem(tampered))
        == ch.ChannelErr.BAD_SIGNATURE
    )
    other_net = sign_voucher(voucher_key, Voucher(channel, 2, 2 * TON), NETWORK + 1)
    assert (
        await _call(c, payee, channel, ch.FEE_REDEEM, _redeem(other_net))
        == ch.ChannelErr.WRONG_NETWORK
    )
    assert await _call(c, payee, channel, ch.FEE_REDEEM, _redeem(v1)) == ch.ChannelErr.SEQNO_REPLAY
    assert (await _state(c, channel)).redeemed == TON

    assert await _call(c, payee, channel, ch.FEE_REDEEM, _redeem(v2)) == 0
    assert await _call(c, payer, channel, ch.FEE_CONTROL, ch.close_body()) == 0
    st = await _state(c, channel)
    assert st.close_at > 0 and st.redeemed == 2 * TON
    # The payee can still redeem during the delay; the payer cannot withdraw yet.
    v3 = sign_voucher(voucher_key, Voucher(channel, 3, 3 * TON), NETWORK)
    assert await _call(c, payee, channel, ch.FEE_REDEEM, _redeem(v3)) == 0
    withdraw = ch.withdraw_body()
    assert await _call(c, payer, channel, ch.FEE_CONTROL, withdraw) == ch.ChannelErr.TOO_EARLY

    await c.advance(DELAY + 1)
    assert await _call(c, payer, channel, ch.FEE_CONTROL, withdraw) == 0
    st = await _state(c, channel)
    assert (st.deposit, st.redeemed, st.seqno) == (3 * TON, 3 * TON, 3)
    assert await c.get_balance(channel) == 0  # the channel ends empty

    # The payee received exactly the voucher totals (payouts), the payer the rest (refund).
    payouts = refunds = 0
    for t in await c.get_transactions(payee.raw_address, 50):
        body = t.in_msg.msg_data.body if t.in_msg else ""
        s = Cell.one_from_boc(base64.b64decode(body)).begin_parse() if body else None
        if s is not None and s.remaining_bits >= 32 and s.load_uint(32) == ch.ChannelOp.PAYOUT:
            payouts += s.load_coins()
    for t in await c.get_transactions(payer.raw_address, 50):
        body = t.in_msg.msg_data.body if t.in_msg else ""
        s = Cell.one_from_boc(base64.b64decode(body)).begin_parse() if body else None
        if s is not None and s.remaining_bits >= 32 and s.load_uint(32) == ch.ChannelOp.REFUND:
            refunds += s.load_coins()
    assert (payouts, refunds) == (3 * TON, 2 * TON)

    # Balances: the payee gained the totals less its own fees; the payer lost the totals plus
    # its fees; and to the nanoton, what left the two wallets is exactly the fees charged
    # (transaction fees + forwarding fees of the messages sent) since the start.
    payee_gain = await payee.balance() - payee_start
    payer_loss = payer_start - await payer.balance()
    assert 3 * TON - TON // 10 < payee_gain < 3 * TON
    assert 3 * TON < payer_loss < 3 * TON + TON // 10
    fees = 0
    for a in (payer.raw_address, payee.raw_address, channel):
        for t in await c.get_transactions(a, 100):
            if t.transaction_id.lt > start_lt:
                fees += t.fee + sum(m.fwd_fee for m in t.out_msgs)
    assert payer_loss - payee_gain == fees
