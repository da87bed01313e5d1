"""Payment-channel operations on chain, as a node performs them.

:class:`ChannelOps` binds one channel (its :class:`~cocoon.chain.channel.ChannelConfig`)
to one wallet: the payer's to deploy, top up, close and withdraw, the payee's to
redeem. Each operation is one internal message from the wallet to the channel; the
call returns once the channel's transaction caused by that message is on chain, and
raises :class:`ChannelTxError` (the contract's exit code and its meaning) when the
channel refused it.

How the channel's transaction is found (:mod:`cocoon.chain.transactions`): every body
carries a fresh random query id, so its hash is unique; the channel's transactions
after the last one seen before sending are polled (bounded, with backoff) for an
inbound message from the wallet with that body hash. The outcome is read from the
transaction's own BoC, so it works on TON (toncenter does not report exit codes) as
well as on the local chain.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Protocol

from pytoniq_core.boc import Cell

from .channel import (
    FEE_CONTROL,
    FEE_REDEEM,
    FEE_TOPUP,
    ChannelConfig,
    ChannelErr,
    ChannelOp,
    ChannelParams,
    ChannelState,
    channel_init,
    close_body,
    decode_params,
    decode_state,
    parse_address,
    raw_address,
    redeem_body,
    top_up_body,
    withdraw_body,
)
from .toncenter import ChainError, GetMethodResult, TonCenterClient, Transaction
from .transactions import COMPUTE_SKIPPED, failure_meaning, send_and_find, tx_outcome
from .wallet import InternalMessage, Wallet

__all__ = [
    "CHANNEL_EXIT_MEANINGS",
    "COMPUTE_SKIPPED",
    "ChannelNotDeployed",
    "ChannelOps",
    "ChannelOpsError",
    "ChannelTxError",
    "ChannelTxTimeout",
    "channel_exit_meaning",
]

# contracts/README.md, "Exit codes" (channel).
CHANNEL_EXIT_MEANINGS: dict[int, str] = {
    ChannelErr.MALFORMED: "malformed body or voucher cell",
    ChannelErr.UNKNOWN_OP: "unknown op",
    ChannelErr.NOT_PAYER: "top-up / close / withdraw not from the payer",
    ChannelErr.NOT_PAYEE: "redeem not from the payee",
    ChannelErr.LOW_VALUE: "value does not cover the fee allowance (+ top-up amount)",
    ChannelErr.BAD_VOUCHER_TAG: "signed cell is not a voucher (tag)",
    ChannelErr.WRONG_NETWORK: "voucher for another network",
    ChannelErr.WRONG_CHANNEL: "voucher for another channel",
    ChannelErr.BAD_SIGNATURE: "signature is not the payer's",
    ChannelErr.SEQNO_REPLAY: "seqno not above the last redeemed (replay)",
    ChannelErr.TOTAL_NOT_INCREASING: "total not above what was redeemed",
    ChannelErr.OVER_DEPOSIT: "total above the deposit",
    ChannelErr.NOT_CLOSING: "withdraw before close",
    ChannelErr.TOO_EARLY: "withdraw before the close delay has passed",
    ChannelErr.ALREADY_CLOSING: "close while already closing",
    ChannelErr.CLOSED: "top-up after close",
    ChannelErr.ZERO_AMOUNT: "top-up of 0",
}


class _VoucherFields(Protocol):
    @property
    def channel(self) -> str: ...

    @property
    def total_nano(self) -> int: ...


class RedeemableVoucher(Protocol):
    """A payer-signed voucher (``cocoon.payments.vouchers.SignedVoucher``): the chain
    layer needs only its cell, signature, channel and total."""

    @property
    def voucher(self) -> _VoucherFields: ...

    @property
    def signature(self) -> bytes: ...

    def cell(self) -> Cell: ...


def channel_exit_meaning(exit_code: int, phase: str = "compute") -> str:
    """What the code of a channel's failed transaction means (``exit_code`` of its compute
    phase, :data:`COMPUTE_SKIPPED` where there is no contract, or an action phase's)."""
    not_deployed = "compute phase skipped: the channel is not deployed"
    return failure_meaning(exit_code, phase, CHANNEL_EXIT_MEANINGS, not_deployed)


class ChannelOpsError(Exception):
    """A channel operation did not go through."""


class ChannelTxError(ChannelOpsError):
    """The channel's transaction failed: ``exit_code`` of its compute phase (the contract's
    code, see ``contracts/README.md``) or, with ``phase == "action"``, the action phase's
    result code; ``meaning`` says what it means."""

    def __init__(self, op: str, channel: str, exit_code: int, *, phase: str = "compute") -> None:
        self.op, self.channel, self.exit_code, self.phase = op, channel, exit_code, phase
        self.meaning = channel_exit_meaning(exit_code, phase)
        super().__init__(
            f"{op} refused by channel {channel}: exit code {exit_code} ({self.meaning})"
        )


class ChannelNotDeployed(ChannelTxError):
    """The channel has no contract (its compute phase was skipped, or it has no state)."""

    def __init__(self, op: str, channel: str) -> None:
        super().__init__(op, channel, COMPUTE_SKIPPED)


class ChannelTxTimeout(ChannelOpsError):
    """The message left the wallet but the channel's transaction was not seen in time."""


def _payout(tx: Transaction) -> int:
    """The amount of the Payout message a redeem sent (0 if none)."""
    for m in tx.out_msgs:
        if not m.msg_data.body:
            continue
        s = Cell.one_from_boc(base64.b64decode(m.msg_data.body)).begin_parse()
        if s.remaining_bits >= 32 and s.load_uint(32) == ChannelOp.PAYOUT:
            return int(s.load_coins())
    return 0


class ChannelOps:
    """Operations on the channel of ``config``, sent from ``wallet`` (the payer's for
    deploy/top-up/close/withdraw, the payee's for redeem).

    Each transaction method waits for the channel's transaction (at most
    ``confirm_timeout_s``, then :class:`ChannelTxTimeout`); a refusal raises
    :class:`ChannelTxError`. Sends from one wallet are serialised by the wallet
    (its seqno is shared), so several ``ChannelOps`` may share a wallet.
    """

    def __init__(
        self,
        client: TonCenterClient,
        wallet: Wallet,
        config: ChannelConfig,
        *,
        confirm_timeout_s: float = 60.0,
    ) -> None:
        self.client = client
        self.wallet = wallet
        self.config = config
        self.confirm_timeout_s = confirm_timeout_s
        self.code, self.data, addr = channel_init(config)
        self.address: str = raw_address(addr)

    # -- reads --

    async def _get(self, method: str) -> GetMethodResult | None:
        try:
            r = await self.client.run_get_method(self.address, method)
        except ChainError:
            if not (await self.client.get_address_information(self.address)).active:
                return None
            raise
        if r.exit_code != 0:
            if not (await self.client.get_address_information(self.address)).active:
                return None
            raise ChainError(0, f"{method}() at {self.address} exited with code {r.exit_code}")
        return r

    async def state(self) -> ChannelState | None:
        """The channel's state, or None while it is not deployed."""
        r = await self._get("state")
        return None if r is None else decode_state(r)

    async def params(self) -> ChannelParams | None:
        """The channel's parameters as stored, or None while it is not deployed."""
        r = await self._get("params")
        return None if r is None else decode_params(r)

    # -- transactions --

    async def deploy(self, deposit: int) -> bool:
        """Deploy the channel with a first top-up of ``deposit`` (payer). False, sending
        nothing, if it is already deployed."""
        if await self.state() is not None:
            return False
        await self._transact("deploy", deposit + FEE_TOPUP, top_up_body(deposit, _qid()), True)
        return True

    async def top_up(self, amount: int) -> None:
        """Add ``amount`` to the deposit (payer)."""
        await self._transact("top-up", amount + FEE_TOPUP, top_up_body(amount, _qid()))

    async def redeem(self, voucher: RedeemableVoucher) -> int:
        """Redeem ``voucher`` (payee); the amount paid out. A voucher whose total is not
        above what was redeemed already is a no-op: 0, and no transaction."""
        if parse_address(voucher.voucher.channel) != parse_address(self.address):
            raise ValueError(f"voucher for channel {voucher.voucher.channel}, not {self.address}")
        st = await self.state()
        if st is None:
            raise ChannelNotDeployed("redeem", self.address)
        if voucher.voucher.total_nano <= st.redeemed:
            return 0
        body = redeem_body(voucher.cell(), voucher.signature, _qid())
        tx = await self._transact("redeem", FEE_REDEEM, body)
        return _payout(tx)

    async def close(self) -> None:
        """Start the close delay (payer); the payee can still redeem during it."""
        await self._transact("close", FEE_CONTROL, close_body(_qid()))

    async def withdraw(self) -> None:
        """After the close delay, send the channel's whole balance back to the payer."""
        await self._transact("withdraw", FEE_CONTROL, withdraw_body(_qid()))

    async def _transact(self, op: str, value: int, body: Cell, deploy: bool = False) -> Transaction:
        init = (self.code, self.data) if deploy else None
        msg = InternalMessage(self.address, value, body=body, init=init)
        tx = await send_and_find(self.wallet, msg, time.monotonic() + self.confirm_timeout_s)
        if tx is None:
            raise ChannelTxTimeout(
                f"{op}: the channel {self.address} has no transaction for our message "
                f"after {self.confirm_timeout_s:g} s"
            )
        out = tx_outcome(tx)
        if not out.success:
            if out.exit_code == COMPUTE_SKIPPED:
                raise ChannelNotDeployed(op, self.address)
            raise ChannelTxError(op, self.address, out.exit_code, phase=out.phase)
        return tx


def _qid() -> int:
    """A random query id: makes every body's hash unique, so its transaction can be found."""
    return secrets.randbits(64)
