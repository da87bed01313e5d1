"""The handshake's pieces: its states, what a node presents, the events it ends in,
and the checks of a peer's version, network, role, evidence and key proof.

`Connection` runs the exchange (DESIGN §4); what each step checks lives here,
with no state of its own."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..tee.certs import PeerCertificate, parse_certificate
from ..tee.errors import AttestationError
from ..tee.evidence import Verdict
from ..tee.policy import PeerPolicy, verify_peer
from .errors import AuthenticationError, VersionMismatch
from .messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Message,
)

NONCE_BYTES = 32


# Before the peer has proven who it is, an acceptor takes frames up to this
# size: a Hello carries an RA-TLS certificate (6 KiB with a simulated TDX
# quote; a real quote with its PCK chain, or GPU evidence, stays well under
# this). After the handshake the connection's own limit applies. Without it a
# stranger could make the proxy buffer a 16 MiB frame per connection (issue 16).
HANDSHAKE_MAX_FRAME = 64 * 1024


# The longest refusal reason sent in an Error frame or logged: reasons are
# ours, but some quote what failed, and nothing the peer sent is repeated at length.
MAX_REASON = 200


class State(enum.Enum):
    """Where the connection's handshake stands."""

    START = "start"
    AWAIT_HELLO_ACK = "await_hello_ack"
    AWAIT_AUTH_OK = "await_auth_ok"
    AWAIT_HELLO = "await_hello"
    AWAIT_PROOF = "await_proof"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True)
class LocalIdentity:
    """What a node presents: its role, network, RA-TLS certificate and the key inside it."""

    role: str
    network: str
    certificate: bytes
    signing_key: Ed25519PrivateKey
    # Certificates renewed away recently: a connector's key proof over one of
    # them is still good (its TLS handshake may have begun before the renewal).
    previous_certificates: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Ready:
    """Event: the handshake is done; `peer` is verified under policy with `verdict`."""

    peer: PeerCertificate
    verdict: Verdict
    minor: int


@dataclass(frozen=True)
class PeerRenewed:
    """Event: the peer presented a fresh certificate for the same key, verified."""

    peer: PeerCertificate
    verdict: Verdict


Event = Ready | PeerRenewed | Message


def short_reason(error: BaseException) -> str:
    """An error's text, cut to MAX_REASON characters (for Error frames and logs)."""
    text = str(error)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def proof_message(acceptor_cert_sha256: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    """What the connector signs: it binds its key to this acceptor's TLS certificate."""
    return acceptor_cert_sha256 + nonce_s + nonce_c


def check_version(major: int, minor: int) -> None:
    """Refuse a peer whose major protocol version is not ours."""
    if major != PROTOCOL_MAJOR:
        raise VersionMismatch(
            f"peer speaks protocol {major}.{minor}; this node speaks "
            f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR} (major versions must match)"
        )


def check_peer(
    certificate: bytes,
    role: str,
    network: str,
    local_network: str,
    accept_roles: frozenset[str],
    policy: PeerPolicy,
    now: float,
) -> tuple[PeerCertificate, Verdict]:
    """The peer's certificate and our verdict on it, once its network, role and
    evidence pass; else AuthenticationError with the reason."""
    # The refusals name what this node expects, never what the peer sent: a
    # stranger's 15 MiB `role` must not be logged or echoed back (issue 16).
    if network != local_network:
        raise AuthenticationError(
            f"the peer is on another network; this node is on {local_network!r}",
            "network_mismatch",
        )
    if role not in accept_roles:
        raise AuthenticationError(
            f"the peer's role may not connect here (accepted: {', '.join(sorted(accept_roles))})",
            "role_mismatch",
        )
    try:
        peer = parse_certificate(certificate)
        verdict = verify_peer(peer, expected_role=role, policy=policy, now=int(now))
    except AttestationError as exc:
        reason = getattr(exc, "reason", "attestation")
        hint = ""
        if reason == "untrusted_provider":
            hint = (
                " (a development network without hardware attestation needs"
                " tee.allow_untrusted = true, or --allow-untrusted, on every node)"
            )
        raise AuthenticationError(f"peer refused: {exc}{hint}", reason) from exc
    return peer, verdict
