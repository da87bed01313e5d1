"""HPKE key pairs for end-to-end sealing: ML-KEM-768+X25519 hybrid, or X25519."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from .errors import SealError

SUITE_HYBRID = "mlkem768-x25519"
SUITE_X25519 = "x25519"
SUITES = (SUITE_HYBRID, SUITE_X25519)

MLKEM768_PUBLIC_LEN = 1184
MLKEM768_SEED_LEN = 64
X25519_LEN = 32

HpkePublicKey = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey
HpkePrivateKey = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey

# Both KEMs share HKDF-SHA256 and ChaCha20-Poly1305 (DESIGN §5); built once, reused.
_HPKE_SUITES: dict[str, hpke.Suite] = {
    SUITE_HYBRID: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
    SUITE_X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
}


def hpke_suite(suite: str) -> hpke.Suite:
    """Return the HPKE suite object for a suite name; SealError if unknown."""
    try:
        return _HPKE_SUITES[suite]
    except KeyError:
        raise SealError(f"unknown HPKE suite {suite!r}") from None


class HpkeKeyPair:
    """A node's HPKE private key, with its suite name and raw encodings."""

    __slots__ = ("_mlkem", "_private", "_x25519", "suite")

    def __init__(
        self,
        suite: str,
        x25519_key: x25519.X25519PrivateKey,
        mlkem_key: mlkem.MLKEM768PrivateKey | None = None,
    ) -> None:
        hpke_suite(suite)
        if (suite == SUITE_HYBRID) != (mlkem_key is not None):
            raise SealError("the hybrid suite needs an ML-KEM key, and only it")
        self.suite = suite
        self._x25519 = x25519_key
        self._mlkem = mlkem_key
        self._private: HpkePrivateKey = (
            x25519_key
            if mlkem_key is None
            else hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)
        )

    @classmethod
    def generate(cls, suite: str = SUITE_HYBRID) -> HpkeKeyPair:
        """Generate a fresh key pair of `suite`."""
        hpke_suite(suite)
        mlkem_key = mlkem.MLKEM768PrivateKey.generate() if suite == SUITE_HYBRID else None
        return cls(suite, x25519.X25519PrivateKey.generate(), mlkem_key)

    @classmethod
    def from_private_bytes(cls, suite: str, data: bytes) -> HpkeKeyPair:
        """Rebuild a key pair from `private_bytes()`; SealError on bad suite or length."""
        hpke_suite(suite)
        if suite == SUITE_X25519:
            if len(data) != X25519_LEN:
                raise SealError("X25519 private key must be 32 bytes")
            return cls(suite, x25519.X25519PrivateKey.from_private_bytes(data))
        if len(data) != MLKEM768_SEED_LEN + X25519_LEN:
            raise SealError("hybrid private key must be 96 bytes")
        seed, x_raw = data[:MLKEM768_SEED_LEN], data[MLKEM768_SEED_LEN:]
        return cls(
            suite,
            x25519.X25519PrivateKey.from_private_bytes(x_raw),
            mlkem.MLKEM768PrivateKey.from_seed_bytes(seed),
        )

    def private_bytes(self) -> bytes:
        """Raw private key: X25519 32 bytes, or 64-byte ML-KEM seed + 32-byte X25519."""
        x_raw = self._x25519.private_bytes_raw()
        return x_raw if self._mlkem is None else self._mlkem.private_bytes_raw() + x_raw

    def public_bytes(self) -> bytes:
        """Raw public key: X25519 32 bytes, or 1184-byte ML-KEM + 32-byte X25519."""
        x_raw = self._x25519.public_key().public_bytes_raw()
        if self._mlkem is None:
            return x_raw
        return self._mlkem.public_key().public_bytes_raw() + x_raw

    @property
    def private_key(self) -> HpkePrivateKey:
        """The cryptography private key object that `hpke.Suite.decrypt` takes."""
        return self._private

    def public_key(self) -> HpkePublicKey:
        """The cryptography public key object that `hpke.Suite.encrypt` takes."""
        return load_public_key(self.suite, self.public_bytes())


@functools.lru_cache(maxsize=1024)
def load_public_key(suite: str, data: bytes) -> HpkePublicKey:
    """Parse raw public key bytes of `suite`; SealError on bad suite, length or key.

    Cached: a client seals every request to the same few workers, and parsing
    an ML-KEM key costs as much as a third of an encapsulation.
    """
    hpke_suite(suite)
    try:
        if suite == SUITE_X25519:
            if len(data) != X25519_LEN:
                raise SealError("X25519 public key must be 32 bytes")
            return x25519.X25519PublicKey.from_public_bytes(data)
        if len(data) != MLKEM768_PUBLIC_LEN + X25519_LEN:
            raise SealError("hybrid public key must be 1216 bytes")
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:MLKEM768_PUBLIC_LEN]),
            x25519.X25519PublicKey.from_public_bytes(data[MLKEM768_PUBLIC_LEN:]),
        )
    except ValueError as exc:
        raise SealError(f"invalid {suite} public key") from exc
