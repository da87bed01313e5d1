"""Attestation: claims, evidence, RA-TLS certificates and the peer policy.

Sans-IO: nothing here opens sockets or reads the clock; time is passed in.

Typical use::

    claims = Claims(role="worker", network="main", tls_public_key=raw_public_key(key), ...)
    der = make_attested_certificate(key, claims, provider_by_name("none"), now)
    ...
    peer = parse_certificate(peer_der)  # CertificateError
    verdict = verify_peer(peer, expected_role="proxy", policy=policy, now=now)
"""

from cocoon.tee.certs import (
    RA_TLS_EXTENSION_OID,
    PeerCertificate,
    der_from_pem,
    key_id,
    make_attested_certificate,
    make_certificate,
    parse_certificate,
    private_key_pem,
    raw_public_key,
    tls_files,
    write_pem,
)
from cocoon.tee.claims import (
    REPORT_DATA_LEN,
    ROLES,
    Claims,
    canonical_bytes,
    claims_from_canonical_bytes,
    report_data,
)
from cocoon.tee.errors import AttestationError, CertificateError, EvidenceError, PolicyError
from cocoon.tee.evidence import (
    AttestationProvider,
    Evidence,
    EvidenceVerifier,
    NoneProvider,
    NoneVerifier,
    Verdict,
)
from cocoon.tee.policy import PeerPolicy, verify_peer
from cocoon.tee.providers import known_providers, provider_by_name, verifier_by_name

__all__ = [
    "RA_TLS_EXTENSION_OID",
    "REPORT_DATA_LEN",
    "ROLES",
    "AttestationError",
    "AttestationProvider",
    "CertificateError",
    "Claims",
    "Evidence",
    "EvidenceError",
    "EvidenceVerifier",
    "NoneProvider",
    "NoneVerifier",
    "PeerCertificate",
    "PeerPolicy",
    "PolicyError",
    "Verdict",
    "canonical_bytes",
    "claims_from_canonical_bytes",
    "der_from_pem",
    "key_id",
    "known_providers",
    "make_attested_certificate",
    "make_certificate",
    "parse_certificate",
    "private_key_pem",
    "provider_by_name",
    "raw_public_key",
    "report_data",
    "tls_files",
    "verifier_by_name",
    "verify_peer",
    "write_pem",
]
