"""Domain-separated Ed25519 signatures bound to a network id."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import SignatureError
from .framing import length_prefixed
from .hashing import sha256

# Each use of a key signs under its own tag, so a signature made for one purpose
# can never be replayed as another (e.g. an auth proof passed off as a receipt).
DOMAIN_AUTH = b"cocoon/auth/v1"
DOMAIN_RECEIPT = b"cocoon/receipt/v1"


def signing_payload(domain: bytes, network: str, message: bytes) -> bytes:
    """Encode domain tag, network id and message unambiguously for signing."""
    return length_prefixed(domain, network.encode(), message)


def sign(key: Ed25519PrivateKey, domain: bytes, network: str, message: bytes) -> bytes:
    """Sign `message` under `domain` on `network`; returns the 64-byte signature."""
    return key.sign(signing_payload(domain, network, message))


def verify(
    public_key: bytes, domain: bytes, network: str, message: bytes, signature: bytes
) -> None:
    """Check a signature made by `sign`; raise SignatureError if it does not verify."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, signing_payload(domain, network, message))
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise SignatureError("invalid signature") from exc


def key_id(public_key: bytes) -> str:
    """Return a short printable id of a node: 16 hex chars of sha256(public_key)."""
    return sha256(public_key)[:8].hex()
