"""A node's credentials: identity keys, attested claims and its RA-TLS certificate.

Every role builds these the same way at start: load (or create) its keys,
state its claims, ask its attestation provider for evidence binding them,
and wrap both in a self-signed certificate that TLS presents. Certificates
are short-lived (DESIGN §3); `renew` issues a fresh one for the same keys,
and long-lived connections learn it through a `Renew` message.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

from . import __version__
from .config import TeeConfig
from .crypto.hpke_keys import SUITE_HYBRID
from .crypto.identity import NodeIdentity
from .tee.certs import make_attested_certificate, parse_certificate, tls_files
from .tee.claims import Claims
from .tee.dcap import CollateralCache, pccs_fetcher
from .tee.evidence import (
    SIMULATED_PROVIDERS,
    AttestationProvider,
    EvidenceVerifier,
    tee_kind,
)
from .tee.gpu import collect_gpu_evidence
from .tee.policy import PeerPolicy
from .tee.providers import provider_by_name
from .tee.sim_snp import SIM_SNP_PROVIDER, SimSnpProvider, sim_snp_verifier
from .tee.sim_snp import local_build_platform as snp_build_platform
from .tee.sim_tdx import SIM_TDX_PROVIDER, SimTdxProvider, local_build_platform, sim_tdx_verifier
from .tee.snp_certs import read_crl_file
from .tee.snp_policy import SnpPolicy, SnpVerifier
from .tee.snp_provider import SNP_PROVIDER, SnpTsmProvider
from .tee.snp_roots import amd_roots
from .tee.tdx_policy import TdxPolicy, TdxVerifier
from .tee.tdx_provider import TDX_PROVIDER, ConfigfsTsmProvider
from .wire.endpoints import server_ssl_context
from .wire.handshake import LocalIdentity

CERTIFICATE_VALIDITY_S = 86_400
# Renew well before expiry, so that a peer's clock skew never sees it lapse.
RENEW_EVERY_S = CERTIFICATE_VALIDITY_S // 4


class NodeCredentials:
    """Everything a node presents to its peers; the certificate changes on `renew`."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        role: str,
        network: str,
        data_dir: Path,
        provider: str | AttestationProvider,
        models: list[str],
        now: int,
        gpu_evidence: str = "",
        region: str = "",
    ) -> None:
        self.identity = identity
        self.role = role
        self.network = network
        self.data_dir = data_dir
        self._provider = provider_by_name(provider) if isinstance(provider, str) else provider
        self.provider = self._provider.name
        self.models = list(models)
        # Collected once, for this node's TLS key (the nonce binds it), and
        # claimed in every certificate issued for that key.
        self.gpu = collect_gpu_evidence(gpu_evidence, identity.public_key)
        self.region = region
        self._server_context: ssl.SSLContext | None = None
        self._previous: tuple[bytes, ...] = ()
        self._issue(now)

    def _issue(self, now: int) -> None:
        identity = self.identity
        worker = self.role == "worker"
        self.claims = Claims(
            role=self.role,
            network=self.network,
            tls_public_key=identity.public_key,
            hpke_suite=identity.hpke.suite if worker else "",
            hpke_public_key=identity.hpke.public_bytes() if worker else b"",
            models=self.models,
            version=__version__,
            issued_at=now,
            gpu_evidence=self.gpu.claim if self.gpu is not None else "",
            region=self.region,
        )
        self.certificate = make_attested_certificate(
            identity.signing_key,
            self.claims,
            self._provider,
            now,
            CERTIFICATE_VALIDITY_S,
        )
        parse_certificate(self.certificate)  # fail here, not at the first peer
        self.cert_file, self.key_file = tls_files(
            identity.signing_key, self.certificate, self.data_dir
        )
        self.local = LocalIdentity(
            self.role, self.network, self.certificate, identity.signing_key, self._previous
        )

    def renew(self, now: int | None = None) -> bytes:
        """Issue a fresh certificate for the same keys; new handshakes present it."""
        # A handshake that began with the old certificate may finish after
        # this; its key proof is over the old one, so keep accepting that.
        self._previous = (self.certificate,)
        self._issue(int(time.time()) if now is None else now)
        if self._server_context is not None:
            self._server_context.load_cert_chain(self.cert_file, self.key_file)
        return self.certificate

    @property
    def key_id(self) -> str:
        return self.identity.key_id

    def server_ssl_context(self) -> ssl.SSLContext:
        """The TLS context for accepting; `renew` reloads its certificate in place."""
        if self._server_context is None:
            self._server_context = server_ssl_context(self.cert_file, self.key_file)
        return self._server_context

    def trust_summary(self) -> dict[str, object]:
        """What status outputs show about this node's own attestation."""
        trusted = self.provider != "none"
        return {
            "key_id": self.key_id,
            "role": self.role,
            "provider": self.provider,
            "tee": tee_kind(self.provider),
            "trusted": trusted,
            "note": "" if trusted else "untrusted: no hardware attestation (provider none)",
        } | ({"gpu_evidence": self.gpu.claim} if self.gpu is not None else {})


def make_credentials(
    *,
    role: str,
    network: str,
    data_dir: Path,
    provider: str | AttestationProvider = "none",
    models: list[str] | None = None,
    hpke_suite: str = SUITE_HYBRID,
    now: int | None = None,
    gpu_evidence: str = "",
    region: str = "",
) -> NodeCredentials:
    """Load or create this node's keys and issue its attested certificate."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return NodeCredentials(
        identity=NodeIdentity.load_or_create(data_dir, hpke_suite),
        role=role,
        network=network,
        data_dir=data_dir,
        provider=provider,
        models=list(models or []),
        now=int(time.time()) if now is None else now,
        gpu_evidence=gpu_evidence,
        region=region,
    )


def provider_for(tee: TeeConfig) -> AttestationProvider:
    """This node's own attestation provider, as configured."""
    if tee.provider == SIM_TDX_PROVIDER:
        return SimTdxProvider(platform=local_build_platform(tee.sim_image, debug=tee.sim_debug))
    if tee.provider == TDX_PROVIDER:
        return ConfigfsTsmProvider(tee.tsm_path)
    if tee.provider == SIM_SNP_PROVIDER:
        return SimSnpProvider(platform=snp_build_platform(tee.sim_image, debug=tee.sim_debug))
    if tee.provider == SNP_PROVIDER:
        return SnpTsmProvider(tee.tsm_path, tee.snp_certs_dir)
    return provider_by_name(tee.provider)


def tdx_policy(tee: TeeConfig) -> TdxPolicy:
    return TdxPolicy(
        image_hashes=list(tee.image_hashes) or None,
        tcb_statuses=list(tee.tcb_statuses),
        allowed_advisories=list(tee.allowed_advisories),
    )


def snp_policy(tee: TeeConfig) -> SnpPolicy:
    return SnpPolicy(
        image_hashes=list(tee.image_hashes) or None,
        measurements=list(tee.snp_measurements) or None,
        id_key_digests=list(tee.snp_id_key_digests) or None,
        min_tcb=dict(tee.snp_min_tcb),
        allow_smt=tee.snp_allow_smt,
        allow_migration_agent=tee.snp_allow_migration_agent,
    )


def peer_verifiers(tee: TeeConfig) -> dict[str, EvidenceVerifier]:
    """Verifiers that need configuration: TDX with collateral, SEV-SNP with this node's
    policy, the simulated kinds on a simulated network."""
    verifiers: dict[str, EvidenceVerifier] = {}
    if tee.provider in SIMULATED_PROVIDERS:
        # Only a node that is itself simulated trusts simulated evidence, of
        # either kind: a mixed network has sim-tdx and sim-snp nodes.
        verifiers[SIM_TDX_PROVIDER] = sim_tdx_verifier(tdx_policy(tee), trusted=True)
        verifiers[SIM_SNP_PROVIDER] = sim_snp_verifier(snp_policy(tee), trusted=True)
    verifiers[SNP_PROVIDER] = SnpVerifier(
        roots=amd_roots(), policy=snp_policy(tee), crl=read_crl_file(tee.snp_crl_file)
    )
    if tee.collateral_dir:
        cache = CollateralCache(
            Path(tee.collateral_dir), pccs_fetcher(tee.pccs_url) if tee.pccs_url else None
        )
        verifiers["tdx"] = TdxVerifier(collateral=cache.get, policy=tdx_policy(tee))
    return verifiers


def peer_policy(network: str, allow_untrusted: bool, tee: TeeConfig | None = None) -> PeerPolicy:
    """What this node requires of its peers; ``tee`` adds TDX/SNP verification and freshness."""
    if tee is None:
        return PeerPolicy(allow_untrusted=allow_untrusted, network=network)
    return PeerPolicy(
        allow_untrusted=allow_untrusted,
        network=network,
        max_evidence_age_s=tee.max_evidence_age_s or None,
        verifiers=peer_verifiers(tee),
    )
