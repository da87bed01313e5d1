"""A node's credentials: identity keys, attested claims and its RA-TLS certificate.

Every role builds these the same way at start: load (or create) its keys,
state its claims, ask its attestation provider for evidence binding them,
and wrap both in a self-signed certificate that TLS presents.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .crypto.hpke_keys import SUITE_HYBRID
from .crypto.identity import NodeIdentity
from .tee.certs import make_attested_certificate, parse_certificate, tls_files
from .tee.claims import Claims
from .tee.evidence import provider_by_name
from .tee.policy import PeerPolicy
from .wire.connection import LocalIdentity
from .wire.transport import server_ssl_context

CERTIFICATE_VALIDITY_S = 86_400


@dataclass(frozen=True)
class NodeCredentials:
    """Everything a node presents to its peers."""

    identity: NodeIdentity
    claims: Claims
    certificate: bytes
    local: LocalIdentity
    cert_file: Path
    key_file: Path
    provider: str

    @property
    def key_id(self) -> str:
        return self.identity.key_id

    def server_ssl_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.cert_file, self.key_file)

    def trust_summary(self) -> dict[str, object]:
        """What status outputs show about this node's own attestation."""
        trusted = self.provider != "none"
        return {
            "key_id": self.key_id,
            "role": self.claims.role,
            "provider": self.provider,
            "trusted": trusted,
            "note": "" if trusted else "untrusted: no hardware attestation (provider none)",
        }


def make_credentials(
    *,
    role: str,
    network: str,
    data_dir: Path,
    provider: str = "none",
    models: list[str] | None = None,
    hpke_suite: str = SUITE_HYBRID,
    now: int | None = None,
) -> NodeCredentials:
    """Load or create this node's keys and issue its attested certificate."""
    data_dir.mkdir(parents=True, exist_ok=True)
    identity = NodeIdentity.load_or_create(data_dir, hpke_suite)
    issued_at = int(time.time()) if now is None else now
    claims = Claims(
        role=role,
        network=network,
        tls_public_key=identity.public_key,
        hpke_suite=identity.hpke.suite if role == "worker" else "",
        hpke_public_key=identity.hpke.public_bytes() if role == "worker" else b"",
        models=list(models or []),
        version=__version__,
        issued_at=issued_at,
    )
    certificate = make_attested_certificate(
        identity.signing_key,
        claims,
        provider_by_name(provider),
        issued_at,
        CERTIFICATE_VALIDITY_S,
    )
    parse_certificate(certificate)  # fail at start, not at the first peer
    cert_file, key_file = tls_files(identity.signing_key, certificate, data_dir)
    local = LocalIdentity(role, network, certificate, identity.signing_key)
    return NodeCredentials(identity, claims, certificate, local, cert_file, key_file, provider)


def peer_policy(network: str, allow_untrusted: bool) -> PeerPolicy:
    return PeerPolicy(allow_untrusted=allow_untrusted, network=network)
