"""Errors of the payments layer."""

from __future__ import annotations


class PaymentError(Exception):
    """Base of every payments-layer error."""


class LedgerError(PaymentError):
    """The ledger refused a write (it would lose or double-count money)."""
