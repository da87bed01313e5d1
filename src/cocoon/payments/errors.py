"""Errors of the payments layer."""

from __future__ import annotations


class PaymentError(Exception):
    """Base of every payments-layer error."""


class LedgerError(PaymentError):
    """The ledger refused a write (it would lose or double-count money)."""


class VoucherError(PaymentError):
    """A voucher is not acceptable."""


class BadVoucherSignature(VoucherError):
    """The signature is not the payer's over this voucher (the contract's exit code 208)."""


class WrongVoucherNetwork(VoucherError):
    """The voucher is for another network (exit code 206)."""


class WrongVoucherChannel(VoucherError):
    """The voucher is for another channel (exit code 207)."""


class VoucherNotNewer(VoucherError):
    """Seqno or total not above the last accepted voucher (exit codes 209, 210)."""


class VoucherOverDeposit(VoucherError):
    """The voucher's total is above the channel's deposit (exit code 211)."""
