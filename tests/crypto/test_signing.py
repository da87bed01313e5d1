import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto import (
    DOMAIN_AUTH,
    DOMAIN_RECEIPT,
    SignatureError,
    key_id,
    sign,
    signing_payload,
    verify,
)


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def test_sign_verify_roundtrip() -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign(key, DOMAIN_AUTH, "testnet", b"hello")
    verify(_raw_public(key), DOMAIN_AUTH, "testnet", b"hello", signature)


@pytest.mark.parametrize(
    ("domain", "network", "message"),
    [
        (DOMAIN_RECEIPT, "testnet", b"hello"),
        (DOMAIN_AUTH, "mainnet", b"hello"),
        (DOMAIN_AUTH, "testnet", b"hellO"),
    ],
)
def test_verify_rejects_other_domain_network_message(
    domain: bytes, network: str, message: bytes
) -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign(key, DOMAIN_AUTH, "testnet", b"hello")
    with pytest.raises(SignatureError):
        verify(_raw_public(key), domain, network, message, signature)


def test_verify_rejects_other_key() -> None:
    signature = sign(Ed25519PrivateKey.generate(), DOMAIN_AUTH, "n", b"m")
    with pytest.raises(SignatureError):
        verify(_raw_public(Ed25519PrivateKey.generate()), DOMAIN_AUTH, "n", b"m", signature)


@pytest.mark.parametrize(("public_key", "signature"), [(b"short", bytes(64)), (None, b"x")])
def test_verify_rejects_malformed_bytes(public_key: bytes | None, signature: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    raw = _raw_public(key) if public_key is None else public_key
    with pytest.raises(SignatureError):
        verify(raw, DOMAIN_AUTH, "n", b"m", signature)


def test_signing_payload_is_unambiguous() -> None:
    assert signing_payload(b"ab", "c", b"") != signing_payload(b"a", "bc", b"")
    assert signing_payload(b"a", "", b"bc") != signing_payload(b"a", "b", b"c")


def test_key_id_is_16_hex_chars() -> None:
    ident = key_id(bytes(32))
    assert len(ident) == 16
    int(ident, 16)
    assert key_id(bytes(32)) == ident != key_id(b"\x01" * 32)
