"""Cumulative payment-channel vouchers, signed as the channel contract checks them.

A voucher says "the payer owes the payee ``total_nano`` in all, on this channel",
with a ``seqno`` that rises with every voucher. The payer signs the voucher cell
(``contracts/README.md``: tag, network id, channel address, seqno, total) with
Ed25519 over its representation hash; the payee redeems the latest one on chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Cell

from ..chain.channel import parse_address, voucher_cell
from ..crypto.signing import ed25519_sign, ed25519_verify
from .errors import (
    BadVoucherSignature,
    VoucherError,
    VoucherNotNewer,
    VoucherOverDeposit,
    WrongVoucherChannel,
    WrongVoucherNetwork,
)
from .voucher_hash import voucher_hash

__all__ = ["SignedVoucher", "Voucher", "check_newer", "sign_voucher", "verify_voucher"]

MAX_SEQNO = 2**32 - 1
MAX_COINS = 2**120 - 1
# What the software carries: msgpack on the wire and SQLite hold signed 64-bit
# integers (2^63 nanotons is 9.2 billion TON, far above any TON supply).
MAX_TOTAL = 2**63 - 1


@dataclass(frozen=True)
class Voucher:
    channel: str  # the channel contract's address (raw ``0:hex`` or user-friendly)
    seqno: int
    total_nano: int

    def __post_init__(self) -> None:
        if not 0 <= self.seqno <= MAX_SEQNO:
            raise VoucherError(f"seqno {self.seqno} out of uint32 range")
        if not 0 <= self.total_nano <= MAX_TOTAL:
            raise VoucherError(f"total {self.total_nano} out of range")
        try:
            workchain, account = _account(self.channel)
        except Exception as e:
            raise VoucherError(f"bad channel address {self.channel!r}: {e}") from None
        if len(account) != 32 or not -128 <= workchain < 128:
            raise VoucherError(f"bad channel address {self.channel!r}")

    def cell(self, network: int) -> Cell:
        return voucher_cell(network, self.channel, self.seqno, self.total_nano)

    def digest(self, network: int) -> bytes:
        """The voucher cell's hash: what the payer signs and the contract checks."""
        workchain, account = _account(self.channel)
        try:
            return voucher_hash(network, workchain, account, self.seqno, self.total_nano)
        except ValueError as e:
            raise VoucherError(str(e)) from None


@dataclass(frozen=True)
class SignedVoucher:
    voucher: Voucher
    network: int
    signature: bytes  # 64 bytes

    def cell(self) -> Cell:
        return self.voucher.cell(self.network)


@lru_cache(maxsize=4096)
def _account(channel: str) -> tuple[int, bytes]:
    address = parse_address(channel)
    return int(address.wc), bytes(address.hash_part)


def sign_voucher(key: Ed25519PrivateKey, voucher: Voucher, network: int) -> SignedVoucher:
    return SignedVoucher(voucher, network, ed25519_sign(key, voucher.digest(network)))


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
    if not ed25519_verify(payer_key, signed.signature, signed.voucher.digest(network)):
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
