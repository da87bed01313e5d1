"""Attestation evidence: providers that produce it and verifiers that judge it.

A *provider* runs on the attested node and turns 64 bytes of report data
(the hash of the node's claims) into :class:`Evidence`. A *verifier* runs on
the peer and checks that the evidence is genuine and commits to the report
data it expects, returning a :class:`Verdict`.

Providers and verifiers are looked up by name in :mod:`cocoon.tee.providers`,
which knows every kind; this module holds what they share, and ``none``, the
development provider (its "quote" is the report data itself, unsigned; it
proves nothing, and its verdict is always ``trusted=False``).
"""

from __future__ import annotations

import hmac
from typing import Protocol

import msgspec

from cocoon.tee.claims import REPORT_DATA_LEN
from cocoon.tee.errors import EvidenceError

NONE_PROVIDER = "none"


class Evidence(msgspec.Struct, frozen=True):
    """A provider's proof that some report data came from inside a TEE."""

    provider: str
    """Name of the provider that produced it: "none", "sim-tdx", "tdx", "sim-snp", "sev-snp"."""
    quote: bytes
    """Provider-specific proof; for "none", the 64-byte report data itself, unsigned."""


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of verifying a peer's evidence."""

    trusted: bool
    """True only when hardware attestation succeeded; always False for "none"."""
    provider: str
    """Name of the provider whose evidence was verified."""
    reason: str
    """Human summary, e.g. "ok" or "no hardware attestation (provider none)"."""
    measurements: dict[str, str] = msgspec.field(default_factory=dict)
    """Verified measurements (e.g. MRTD, RTMRs as hex); empty for "none"."""


class AttestationProvider(Protocol):
    """Produces evidence on the attested node."""

    @property
    def name(self) -> str:
        """The provider name written into :attr:`Evidence.provider`."""
        ...

    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence committing to exactly these 64 bytes of report data."""
        ...


class EvidenceVerifier(Protocol):
    """Judges a peer's evidence against the report data its claims hash to."""

    def verify(self, evidence: Evidence, expected_report_data: bytes, now: int) -> Verdict:
        """Return a verdict, or raise EvidenceError if the evidence is bad or unbound."""
        ...


def _check_report_data_len(report_data: bytes) -> None:
    if len(report_data) != REPORT_DATA_LEN:
        raise EvidenceError(
            "malformed", f"report data must be {REPORT_DATA_LEN} bytes, got {len(report_data)}"
        )


class NoneProvider:
    """Development provider: no TEE, the evidence is the bare report data."""

    name: str = NONE_PROVIDER

    def evidence(self, report_data: bytes) -> Evidence:
        _check_report_data_len(report_data)
        return Evidence(provider=NONE_PROVIDER, quote=bytes(report_data))


class NoneVerifier:
    """Verifier for "none": checks the binding only; the verdict is never trusted."""

    def verify(self, evidence: Evidence, expected_report_data: bytes, now: int) -> Verdict:
        _check_report_data_len(expected_report_data)
        if evidence.provider != NONE_PROVIDER:
            raise EvidenceError(
                "provider_mismatch", f"evidence from {evidence.provider!r} given to none verifier"
            )
        # Even unsigned evidence must match the claims: otherwise a certificate
        # could carry claims other than the ones its evidence was made for.
        if not hmac.compare_digest(evidence.quote, expected_report_data):
            raise EvidenceError("report_data_mismatch", "evidence does not bind these claims")
        return Verdict(
            trusted=False,
            provider=NONE_PROVIDER,
            reason="no hardware attestation (provider none)",
        )


_TEE_KINDS = {"sim-tdx": "tdx", "tdx": "tdx", "sim-snp": "sev-snp", "sev-snp": "sev-snp"}
SIMULATED_PROVIDERS = frozenset({"sim-tdx", "sim-snp"})


def tee_kind(provider: str) -> str:
    """The kind of TEE behind a provider name: "tdx", "sev-snp", or "none"."""
    return _TEE_KINDS.get(provider, "none")
