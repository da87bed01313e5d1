"""The attestation providers and verifiers known by name.

Configuration and certificates carry only a provider's name; this module turns
it into the provider that makes evidence (:func:`provider_by_name`) or the
default verifier that judges it (:func:`verifier_by_name`). It is the one
module that knows every kind, so that the kinds depend on
:mod:`cocoon.tee.evidence` and never the reverse.

Known now:

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

from collections.abc import Callable

from cocoon.tee import sim_snp, sim_tdx
from cocoon.tee.errors import AttestationError, EvidenceError, PolicyError
from cocoon.tee.evidence import (
    NONE_PROVIDER,
    AttestationProvider,
    EvidenceVerifier,
    NoneProvider,
    NoneVerifier,
)
from cocoon.tee.sim_snp import SimSnpProvider, sim_snp_verifier
from cocoon.tee.sim_tdx import SimTdxProvider, sim_tdx_verifier
from cocoon.tee.snp_policy import SnpVerifier
from cocoon.tee.snp_provider import SnpTsmProvider
from cocoon.tee.snp_roots import amd_roots
from cocoon.tee.tdx_policy import TdxVerifier
from cocoon.tee.tdx_provider import ConfigfsTsmProvider


def _sim_tdx_provider() -> AttestationProvider:
    return SimTdxProvider(platform=sim_tdx.local_build_platform())


def _sim_tdx_verifier() -> EvidenceVerifier:
    return sim_tdx_verifier(trusted=False)


def _no_collateral(raw_quote: bytes, now: int) -> str:
    raise EvidenceError(
        "collateral_unavailable",
        "no collateral for tdx peers: this node has no tee.collateral_dir configured",
    )


def _tdx_verifier() -> EvidenceVerifier:
    # Intel's real root: root_ca_der stays None. Never trusted without collateral.
    return TdxVerifier(collateral=_no_collateral, provider="tdx")


def _sim_snp_provider() -> AttestationProvider:
    return SimSnpProvider(platform=sim_snp.local_build_platform())


def _sim_snp_verifier() -> EvidenceVerifier:
    return sim_snp_verifier(trusted=False)


def _snp_verifier() -> EvidenceVerifier:
    return SnpVerifier(roots=amd_roots(), provider="sev-snp")


_PROVIDERS: dict[str, Callable[[], AttestationProvider]] = {
    NONE_PROVIDER: NoneProvider,
    "sim-tdx": _sim_tdx_provider,
    "tdx": ConfigfsTsmProvider,
    "sim-snp": _sim_snp_provider,
    "sev-snp": SnpTsmProvider,
}
_VERIFIERS: dict[str, Callable[[], EvidenceVerifier]] = {
    NONE_PROVIDER: NoneVerifier,
    "sim-tdx": _sim_tdx_verifier,
    "tdx": _tdx_verifier,
    "sim-snp": _sim_snp_verifier,
    "sev-snp": _snp_verifier,
}


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
