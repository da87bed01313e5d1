"""Cumulative payment-channel vouchers, signed as the channel contract checks them.

A voucher says "the payer owes the payee ``total_nano`` in all, on this channel",
with a ``seqno`` that rises with every voucher. The payer signs the voucher cell
(``contracts/README.md``: tag, network id, channel address, seqno, total) with
Ed25519 over its representation hash; the payee redeems the latest one on chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Cell

from ..chain.channel import parse_address, sign_voucher_cell, verify_voucher_cell, voucher_cell
from .errors import (
    BadVoucherSignature,
    VoucherError,
    VoucherNotNewer,
    VoucherOverDeposit,
    WrongVoucherChannel,
    WrongVoucherNetwork,
)

__all__ = ["SignedVoucher", "Voucher", "check_newer", "sign_voucher", "verify_voucher"]

MAX_SEQNO = 2**32 - 1
MAX_COINS = 2**120 - 1


@dataclass(frozen=True)
class Voucher:
    channel: str  # the channel contract's address (raw ``0:hex`` or user-friendly)
    seqno: int
    total_nano: int

    def __post_init__(self) -> None:
        if not 0 <= self.seqno <= MAX_SEQNO:
            raise VoucherError(f"seqno {self.seqno} out of uint32 range")
        if not 0 <= self.total_nano <= MAX_COINS:
            raise VoucherError(f"total {self.total_nano} out of coins range")
        try:
            parse_address(self.channel)
        except Exception as e:
            raise VoucherError(f"bad channel address {self.channel!r}: {e}") from None

    def cell(self, network: int) -> Cell:
        return voucher_cell(network, self.channel, self.seqno, self.total_nano)


@dataclass(frozen=True)
class SignedVoucher:
    voucher: Voucher
    network: int
    signature: bytes  # 64 bytes

    def cell(self) -> Cell:
        return self.voucher.cell(self.network)


def sign_voucher(key: Ed25519PrivateKey, voucher: Voucher, network: int) -> SignedVoucher:
    return SignedVoucher(voucher, network, sign_voucher_cell(voucher.cell(network), key))


def verify_voucher(
    signed: SignedVoucher,
    payer_key: bytes,
    *,
    network: int,
    channel: str | None = None,
) -> None:
    """Raise unless ``signed`` is for ``network`` (and ``channel``, when given) and
    signed by ``payer_key`` (the channel's 32-byte Ed25519 public key)."""
    if signed.network != network:
        raise WrongVoucherNetwork(f"voucher for network {signed.network}, expected {network}")
    if channel is not None and parse_address(signed.voucher.channel) != parse_address(channel):
        raise WrongVoucherChannel(f"voucher for channel {signed.voucher.channel}, not {channel}")
    if len(signed.signature) != 64 or not verify_voucher_cell(
        signed.cell(), signed.signature, payer_key
    ):
        raise BadVoucherSignature("voucher signature is not the payer's")


def check_newer(voucher: Voucher, *, seqno: int, redeemed: int, deposit: int | None) -> None:
    """Raise unless ``voucher`` follows the last accepted (``seqno``, ``redeemed``) and fits
    ``deposit`` (when given): the contract's replay and over-deposit rules."""
    if voucher.seqno <= seqno:
        raise VoucherNotNewer(f"seqno {voucher.seqno} not above {seqno}")
    if voucher.total_nano <= redeemed:
        raise VoucherNotNewer(f"total {voucher.total_nano} not above {redeemed}")
    if deposit is not None and voucher.total_nano > deposit:
        raise VoucherOverDeposit(f"total {voucher.total_nano} above the deposit {deposit}")
