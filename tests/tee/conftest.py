"""Fixtures for the attestation tests: a key, claims naming it, and a clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.tee import Claims, make_attested_certificate, provider_by_name, raw_public_key

NOW = 1_750_000_000
NETWORK = "testnet"


def claims_for(key: Ed25519PrivateKey, *, role: str = "worker", **changes: object) -> Claims:
    fields: dict[str, object] = {
        "role": role,
        "network": NETWORK,
        "tls_public_key": raw_public_key(key),
        "hpke_suite": "X25519-HKDF-SHA256/HKDF-SHA256/ChaCha20Poly1305",
        "hpke_public_key": bytes(range(32)),
        "models": ["qwen@sha256:" + "ab" * 32],
        "version": "0.1.0",
        "issued_at": NOW,
    }
    fields.update(changes)
    return Claims(**fields)  # type: ignore[arg-type]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def issue(key: Ed25519PrivateKey) -> Callable[..., bytes]:
    """Issue a none-attested certificate for ``key``; keyword args change the claims."""

    def _issue(*, now: int = NOW, validity_s: int = 86400, **changes: Any) -> bytes:
        claims = claims_for(key, **changes)
        return make_attested_certificate(key, claims, provider_by_name("none"), now, validity_s)

    return _issue
