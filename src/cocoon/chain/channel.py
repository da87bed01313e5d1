"""The payment channel contract (``contracts/contracts/channel.tolk``) from Python.

A mirror of ``contracts/wrappers/Channel.ts`` (the reference encodings; formats in
``contracts/README.md``): init data, state init and address, message bodies, the
voucher cell and its Ed25519 signature over the cell's representation hash, and
get-method decoding. Amounts are integer nanotons.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Address, Builder, Cell
from pytoniq_core.tlb.account import StateInit

from ..crypto.signing import ed25519_sign, ed25519_verify
from .local import contracts_dir
from .toncenter import GetMethodResult, TvmCell, TvmSlice

__all__ = [
    "FEE_CONTROL",
    "FEE_REDEEM",
    "FEE_TOPUP",
    "VOUCHER_TAG",
    "ChannelConfig",
    "ChannelErr",
    "ChannelOp",
    "ChannelParams",
    "ChannelState",
    "address_of",
    "channel_code",
    "channel_data",
    "channel_init",
    "close_body",
    "decode_params",
    "decode_state",
    "parse_address",
    "raw_address",
    "redeem_body",
    "sign_voucher_cell",
    "state_init_cell",
    "top_up_body",
    "verify_voucher_cell",
    "voucher_cell",
    "withdraw_body",
]


class ChannelOp:
    TOP_UP = 0x746F7075
    REDEEM = 0x72646D76
    CLOSE = 0x636C6F73
    WITHDRAW = 0x77647261
    PAYOUT = 0x7061796F
    REFUND = 0x72656664


class ChannelErr:
    """The channel's exit codes (``contracts/README.md``)."""

    MALFORMED = 200
    UNKNOWN_OP = 201
    NOT_PAYER = 202
    NOT_PAYEE = 203
    LOW_VALUE = 204
    BAD_VOUCHER_TAG = 205
    WRONG_NETWORK = 206
    WRONG_CHANNEL = 207
    BAD_SIGNATURE = 208
    SEQNO_REPLAY = 209
    TOTAL_NOT_INCREASING = 210
    OVER_DEPOSIT = 211
    NOT_CLOSING = 212
    TOO_EARLY = 213
    ALREADY_CLOSING = 214
    CLOSED = 215
    ZERO_AMOUNT = 216


VOUCHER_TAG = 0x434F4356
# Minimum attached values (the fee allowances the contract checks).
FEE_TOPUP = 10_000_000  # on top of the top-up amount
FEE_REDEEM = 20_000_000
FEE_CONTROL = 10_000_000  # close, withdraw


def parse_address(a: Address | str) -> Address:
    """An address from its raw (``0:hex``) or user-friendly form."""
    return a if isinstance(a, Address) else Address(a)


def raw_address(a: Address | str) -> str:
    """``wc:hex``, the form the toncenter API and the local chain accept."""
    return str(parse_address(a).to_str(is_user_friendly=False))


@cache
def _code_boc(path: Path) -> bytes:
    j = json.loads(path.read_text())
    return base64.b64decode(j["codeBoc64"])


def channel_code(contracts: Path | None = None) -> Cell:
    """The committed compiled code (``contracts/build/channel.json``)."""
    return Cell.one_from_boc(_code_boc((contracts or contracts_dir()) / "build" / "channel.json"))


@dataclass(frozen=True)
class ChannelConfig:
    network_id: int
    channel_id: int
    payer: Address | str
    payee: Address | str
    payer_key: bytes  # 32-byte Ed25519 public key
    close_delay: int


def channel_data(c: ChannelConfig) -> Cell:
    if len(c.payer_key) != 32:
        raise ValueError("payer_key must be a 32-byte Ed25519 public key")
    params = (
        Builder()
        .store_int(c.network_id, 32)
        .store_uint(c.channel_id, 64)
        .store_address(parse_address(c.payer))
        .store_address(parse_address(c.payee))
        .store_bytes(c.payer_key)
        .store_uint(c.close_delay, 32)
        .end_cell()
    )
    b = Builder().store_coins(0).store_coins(0).store_uint(0, 32).store_uint(0, 32)
    return b.store_ref(params).end_cell()


def state_init_cell(code: Cell, data: Cell) -> Cell:
    """``StateInit`` with code and data only (what ``contractAddress`` hashes)."""
    return StateInit(code=code, data=data).serialize()


def address_of(code: Cell, data: Cell, workchain: int = 0) -> Address:
    """The address of a contract with this (code, data): the hash of its state init."""
    return Address((workchain, bytes(state_init_cell(code, data).hash)))


def channel_init(c: ChannelConfig, code: Cell | None = None) -> tuple[Cell, Cell, Address]:
    """(code, data, address) of the channel for ``c``."""
    code = channel_code() if code is None else code
    data = channel_data(c)
    return code, data, address_of(code, data)


def voucher_cell(network_id: int, channel: Address | str, seqno: int, total: int) -> Cell:
    b = Builder().store_uint(VOUCHER_TAG, 32).store_int(network_id, 32)
    b = b.store_address(parse_address(channel)).store_uint(seqno, 32).store_coins(total)
    return b.end_cell()


def sign_voucher_cell(voucher: Cell, key: Ed25519PrivateKey) -> bytes:
    """Ed25519 over the voucher cell's representation hash (what the contract checks)."""
    return ed25519_sign(key, bytes(voucher.hash))


def verify_voucher_cell(voucher: Cell, signature: bytes, public_key: bytes) -> bool:
    return ed25519_verify(public_key, signature, bytes(voucher.hash))


def _head(op: int, query_id: int) -> Any:
    return Builder().store_uint(op, 32).store_uint(query_id, 64)


def redeem_body(voucher: Cell, signature: bytes, query_id: int = 0) -> Cell:
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return _head(ChannelOp.REDEEM, query_id).store_bytes(signature).store_ref(voucher).end_cell()


def top_up_body(amount: int, query_id: int = 0) -> Cell:
    return _head(ChannelOp.TOP_UP, query_id).store_coins(amount).end_cell()


def close_body(query_id: int = 0) -> Cell:
    return _head(ChannelOp.CLOSE, query_id).end_cell()


def withdraw_body(query_id: int = 0) -> Cell:
    return _head(ChannelOp.WITHDRAW, query_id).end_cell()


@dataclass(frozen=True)
class ChannelState:
    deposit: int
    redeemed: int
    seqno: int
    close_at: int
    close_delay: int
    balance: int

    @property
    def unredeemed(self) -> int:
        return self.deposit - self.redeemed


@dataclass(frozen=True)
class ChannelParams:
    network_id: int
    channel_id: int
    payer: Address
    payee: Address
    payer_key: bytes
    close_delay: int


def _check(r: GetMethodResult, method: str) -> None:
    if r.exit_code != 0:
        raise ValueError(f"get-method {method} exited with code {r.exit_code}")


def decode_state(r: GetMethodResult) -> ChannelState:
    """The ``state()`` get-method's answer."""
    _check(r, "state")
    return ChannelState(*(r.int_at(i) for i in range(6)))


def _stack_address(v: object) -> Address:
    if not isinstance(v, TvmCell | TvmSlice):
        raise TypeError(f"expected an address slice, got {type(v).__name__}")
    return Cell.one_from_boc(v.boc).begin_parse().load_address()


def decode_params(r: GetMethodResult) -> ChannelParams:
    """The ``params()`` get-method's answer."""
    _check(r, "params")
    return ChannelParams(
        network_id=r.int_at(0),
        channel_id=r.int_at(1),
        payer=_stack_address(r.stack[2]),
        payee=_stack_address(r.stack[3]),
        payer_key=r.int_at(4).to_bytes(32, "big"),
        close_delay=r.int_at(5),
    )
