"""Whether to accept a peer: one function applying one policy to a parsed certificate.

Checks, in order (the first failure raises):

1. validity window, widened by ``max_clock_skew_s`` on both sides
   (CertificateError "not_yet_valid" / "expired");
2. network (PolicyError "network_mismatch") and role when one is expected
   (PolicyError "role_mismatch");
3. ``claims.issued_at`` not beyond ``now + max_clock_skew_s``
   (PolicyError "issued_in_future"), and, when ``max_evidence_age_s`` is set,
   not older than that (PolicyError "stale_evidence": the evidence was made
   for these claims, so their time is the evidence's time);
4. the evidence, by the verifier for its provider, against
   ``report_data(claims)`` (PolicyError "unknown_provider", or the verifier's
   EvidenceError such as "report_data_mismatch");
5. an untrusted verdict (provider ``none``) is refused with PolicyError
   "untrusted_provider" unless ``allow_untrusted``; then it is returned as is,
   and callers show the peer as untrusted.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from cocoon.tee.certs import PeerCertificate
from cocoon.tee.claims import report_data
from cocoon.tee.errors import CertificateError, PolicyError
from cocoon.tee.evidence import EvidenceVerifier, Verdict
from cocoon.tee.providers import verifier_by_name


class PeerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What a node requires of the peers it talks to."""

    allow_untrusted: bool = False
    """Accept peers without hardware attestation (provider "none"); development only."""
    network: str
    """The network peers must claim."""
    max_clock_skew_s: int = 300
    """Tolerated clock difference for validity windows and ``issued_at``."""
    max_evidence_age_s: int | None = None
    """Refuse evidence whose claims were issued longer ago than this; None: no limit."""
    verifiers: Mapping[str, EvidenceVerifier] = msgspec.field(default_factory=dict)
    """Configured verifiers by provider name (e.g. TDX with trusted images and
    collateral); the ``verifiers`` argument of :func:`verify_peer` takes precedence."""


def verify_peer(
    cert: PeerCertificate,
    *,
    expected_role: str | None,
    policy: PeerPolicy,
    now: int,
    verifiers: Mapping[str, EvidenceVerifier] | None = None,
) -> Verdict:
    """Apply ``policy`` to a parsed certificate; return the evidence verdict or raise.

    ``verifiers`` overrides the default verifier per provider name (for
    verifiers that need configuration, such as trusted TDX measurements);
    providers not in it fall back to :func:`verifier_by_name`.
    """
    skew = policy.max_clock_skew_s
    if now + skew < cert.not_before:
        raise CertificateError(
            "not_yet_valid", f"certificate valid from {cert.not_before}, now is {now}"
        )
    if now - skew > cert.not_after:
        raise CertificateError("expired", f"certificate expired at {cert.not_after}, now is {now}")

    claims = cert.claims
    if claims.network != policy.network:
        raise PolicyError(
            "network_mismatch",
            f"peer is on network {claims.network!r}, expected {policy.network!r}",
        )
    if expected_role is not None and claims.role != expected_role:
        raise PolicyError(
            "role_mismatch", f"peer claims role {claims.role!r}, expected {expected_role!r}"
        )
    if claims.issued_at > now + skew:
        raise PolicyError("issued_in_future", f"claims issued at {claims.issued_at}, now is {now}")
    max_age = policy.max_evidence_age_s
    if max_age is not None and claims.issued_at < now - max_age - skew:
        raise PolicyError(
            "stale_evidence",
            f"evidence issued at {claims.issued_at} is older than {max_age} s (now {now})",
        )

    provider = cert.evidence.provider
    verifier = (verifiers or {}).get(provider) or policy.verifiers.get(provider)
    if verifier is None:
        verifier = verifier_by_name(provider)  # PolicyError("unknown_provider")
    verdict = verifier.verify(cert.evidence, report_data(claims), now)

    if not verdict.trusted and not policy.allow_untrusted:
        raise PolicyError(
            "untrusted_provider",
            f"peer is not attested ({verdict.reason}) and untrusted peers are not allowed",
        )
    return verdict
