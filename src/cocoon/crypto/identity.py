"""A node's long-term keys: Ed25519 for signing, HPKE for sealed requests."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import CryptoError
from .hpke_keys import SUITE_HYBRID, HpkeKeyPair
from .signing import key_id, sign

IDENTITY_FILE = "identity.key"
HPKE_FILE = "hpke.key"


class NodeIdentity:
    """The signing key and HPKE key pair of one node."""

    __slots__ = ("_public_key", "hpke", "signing_key")

    def __init__(self, signing_key: Ed25519PrivateKey, hpke: HpkeKeyPair) -> None:
        self.signing_key = signing_key
        self.hpke = hpke
        # Every receipt names its worker's key: derived once, not per answer.
        self._public_key = signing_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls, hpke_suite: str = SUITE_HYBRID) -> NodeIdentity:
        """Generate a fresh identity, not stored anywhere."""
        return cls(Ed25519PrivateKey.generate(), HpkeKeyPair.generate(hpke_suite))

    @classmethod
    def load_or_create(cls, directory: Path, hpke_suite: str = SUITE_HYBRID) -> NodeIdentity:
        """Load the identity stored in `directory`, creating each missing key file."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        signing_path = directory / IDENTITY_FILE
        if signing_path.exists():
            signing_key = _read_signing_key(signing_path)
        else:
            signing_key = Ed25519PrivateKey.generate()
            _write_private(signing_path, signing_key.private_bytes_raw())
        hpke_path = directory / HPKE_FILE
        # An existing HPKE key is kept even if `hpke_suite` differs: the key is
        # bound into attested claims, so changing it is a deliberate act.
        if hpke_path.exists():
            hpke = _read_hpke_key(hpke_path)
        else:
            hpke = HpkeKeyPair.generate(hpke_suite)
            text = f"{hpke.suite}\n{hpke.private_bytes().hex()}\n"
            _write_private(hpke_path, text.encode())
        return cls(signing_key, hpke)

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def key_id(self) -> str:
        """Short printable id of this node (see `signing.key_id`)."""
        return key_id(self.public_key)

    def sign(self, domain: bytes, network: str, message: bytes) -> bytes:
        """Sign `message` under `domain` on `network` with the node's key."""
        return sign(self.signing_key, domain, network, message)


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: never overwrite a key another process just created; 0600 from birth.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _read_signing_key(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    if len(data) != 32:
        raise CryptoError(f"{path}: expected a raw 32-byte Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(data)


def _read_hpke_key(path: Path) -> HpkeKeyPair:
    try:
        suite, hex_key = path.read_text().split()
        return HpkeKeyPair.from_private_bytes(suite, bytes.fromhex(hex_key))
    except (ValueError, CryptoError) as exc:
        raise CryptoError(f"{path}: malformed HPKE key file") from exc
