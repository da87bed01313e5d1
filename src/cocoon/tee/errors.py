"""The error model of the attestation layer.

Every error carries a short machine-readable ``reason`` (for logs, metrics and
status outputs) and a human message (``str(error)``). Callers that only care
whether a peer is acceptable catch :class:`AttestationError`; the subclasses
say *what* was wrong: the certificate itself, the evidence in it, or our
policy about an otherwise well-formed peer.
"""

from __future__ import annotations


class AttestationError(Exception):
    """Base class: a peer's identity or attestation could not be established."""

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={str(self)!r})"


class CertificateError(AttestationError):
    """The certificate is malformed, expired or not yet valid, or its keys disagree."""


class EvidenceError(AttestationError):
    """The evidence is malformed or does not bind the claims it travels with."""


class PolicyError(AttestationError):
    """A well-formed peer that our policy refuses (provider, role, network)."""
