"""Errors of the cryptographic layer: one base, one leaf per kind of failure."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by `cocoon.crypto`."""


class SignatureError(CryptoError):
    """A signature, or the public key or signature bytes themselves, did not verify."""


class SealError(CryptoError):
    """A sealed envelope or HPKE key cannot be used: not addressed to us, tampered, malformed."""


class StreamError(CryptoError):
    """An answer chunk was tampered, reordered, duplicated, or the stream was truncated."""


class ReceiptError(CryptoError):
    """A usage receipt is malformed, badly signed, or does not match what was expected."""
