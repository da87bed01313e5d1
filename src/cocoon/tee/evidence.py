"""Attestation evidence: providers that produce it and verifiers that judge it.

A *provider* runs on the attested node and turns 64 bytes of report data
(the hash of the node's claims) into :class:`Evidence`. A *verifier* runs on
the peer and checks that the evidence is genuine and commits to the report
data it expects, returning a :class:`Verdict`.

Providers and verifiers are looked up by name (:func:`provider_by_name`,
:func:`verifier_by_name`) so that configuration and certificates only carry
strings. Known now:

- ``none``: development only. The "quote" is the report data itself, unsigned;
  it proves nothing, and its verdict is always ``trusted=False``.

- ``sim-tdx``: TDX v4 quotes from a simulated Intel PKI
  (:mod:`cocoon.tee.sim_tdx`). Its default verifier checks them with the very
  same DCAP code but returns ``trusted=False``: the simulated root is public.
  Only a node that runs sim-tdx itself trusts them (it passes its own
  verifier through ``verifiers``).

- ``tdx``: real TDX quotes from Linux configfs-tsm
  (:mod:`cocoon.tee.tdx_provider`, at its default path). Its default verifier
  is :class:`cocoon.tee.tdx_policy.TdxVerifier` with Intel's real root and
  the default policy, but no collateral: it refuses every quote with
  EvidenceError "collateral_unavailable" (a precise reason, where "unknown
  provider" would be wrong). A node that verifies tdx peers configures
  collateral (``tee.collateral_dir``) and a policy, and hands that verifier
  in, as for any verifier that needs configuration, to
  :func:`cocoon.tee.policy.verify_peer` through ``PeerPolicy.verifiers`` or
  its ``verifiers`` argument.

- ``sim-snp``: SEV-SNP reports from a simulated AMD PKI
  (:mod:`cocoon.tee.sim_snp`), checked by the same SNP code with the
  simulated ARK pinned, untrusted by default as sim-tdx is.

- ``sev-snp``: real SEV-SNP reports from configfs-tsm
  (:mod:`cocoon.tee.snp_provider`). Its default verifier is
  :class:`cocoon.tee.snp_policy.SnpVerifier` with AMD's pinned roots and the
  default policy; everything it needs travels in the evidence (report and
  VCEK), so unlike tdx it verifies offline without configuration.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

import msgspec

from cocoon.tee.claims import REPORT_DATA_LEN
from cocoon.tee.errors import AttestationError, EvidenceError, PolicyError

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


def _sim_tdx_provider() -> AttestationProvider:
    from cocoon.tee.sim_tdx import SimTdxProvider, local_build_platform

    return SimTdxProvider(platform=local_build_platform())


def _sim_tdx_verifier() -> EvidenceVerifier:
    from cocoon.tee.sim_tdx import sim_tdx_verifier

    return sim_tdx_verifier(trusted=False)


def _tdx_provider() -> AttestationProvider:
    from cocoon.tee.tdx_provider import ConfigfsTsmProvider

    return ConfigfsTsmProvider()


def _no_collateral(raw_quote: bytes, now: int) -> str:
    raise EvidenceError(
        "collateral_unavailable",
        "no collateral for tdx peers: this node has no tee.collateral_dir configured",
    )


def _tdx_verifier() -> EvidenceVerifier:
    from cocoon.tee.tdx_policy import TdxVerifier

    # Intel's real root: root_ca_der stays None. Never trusted without collateral.
    return TdxVerifier(collateral=_no_collateral, provider="tdx")


def _sim_snp_provider() -> AttestationProvider:
    from cocoon.tee.sim_snp import SimSnpProvider, local_build_platform

    return SimSnpProvider(platform=local_build_platform())


def _sim_snp_verifier() -> EvidenceVerifier:
    from cocoon.tee.sim_snp import sim_snp_verifier

    return sim_snp_verifier(trusted=False)


def _snp_provider() -> AttestationProvider:
    from cocoon.tee.snp_provider import SnpTsmProvider

    return SnpTsmProvider()


def _snp_verifier() -> EvidenceVerifier:
    from cocoon.tee.snp_policy import SnpVerifier
    from cocoon.tee.snp_roots import amd_roots

    return SnpVerifier(roots=amd_roots(), provider="sev-snp")


_PROVIDERS: dict[str, Callable[[], AttestationProvider]] = {
    NONE_PROVIDER: NoneProvider,
    "sim-tdx": _sim_tdx_provider,
    "tdx": _tdx_provider,
    "sim-snp": _sim_snp_provider,
    "sev-snp": _snp_provider,
}
_VERIFIERS: dict[str, Callable[[], EvidenceVerifier]] = {
    NONE_PROVIDER: NoneVerifier,
    "sim-tdx": _sim_tdx_verifier,
    "tdx": _tdx_verifier,
    "sim-snp": _sim_snp_verifier,
    "sev-snp": _snp_verifier,
}
_TEE_KINDS = {"sim-tdx": "tdx", "tdx": "tdx", "sim-snp": "sev-snp", "sev-snp": "sev-snp"}
SIMULATED_PROVIDERS = frozenset({"sim-tdx", "sim-snp"})


def tee_kind(provider: str) -> str:
    """The kind of TEE behind a provider name: "tdx", "sev-snp", or "none"."""
    return _TEE_KINDS.get(provider, "none")


def known_providers() -> list[str]:
    """Names accepted by :func:`provider_by_name` and :func:`verifier_by_name`."""
    return sorted(_PROVIDERS)


def provider_by_name(name: str) -> AttestationProvider:
    """The provider configured as ``name``; raise AttestationError("unknown_provider")."""
    factory = _PROVIDERS.get(name)
    if factory is None:
        raise AttestationError(
            "unknown_provider",
            f"unknown attestation provider {name!r}; known: {', '.join(known_providers())}",
        )
    return factory()


def verifier_by_name(name: str) -> EvidenceVerifier:
    """The default verifier for evidence from ``name``; raise PolicyError("unknown_provider").

    A :class:`PolicyError` because the name comes from a peer: evidence from a
    provider we cannot verify is refused, not a fault of ours.
    """
    factory = _VERIFIERS.get(name)
    if factory is None:
        raise PolicyError(
            "unknown_provider",
            f"cannot verify evidence from provider {name!r}; known: {', '.join(known_providers())}",
        )
    return factory()
