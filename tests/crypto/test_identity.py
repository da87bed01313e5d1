import stat
from pathlib import Path

import pytest

from cocoon.crypto import (
    DOMAIN_AUTH,
    SUITE_HYBRID,
    SUITE_X25519,
    CryptoError,
    NodeIdentity,
    key_id,
    verify,
)


def test_load_or_create_creates_then_reuses(tmp_path: Path) -> None:
    first = NodeIdentity.load_or_create(tmp_path / "node")
    again = NodeIdentity.load_or_create(tmp_path / "node")
    assert again.public_key == first.public_key
    assert again.hpke.public_bytes() == first.hpke.public_bytes()
    assert again.hpke.suite == SUITE_HYBRID
    for name in ("identity.key", "hpke.key"):
        assert stat.S_IMODE((tmp_path / "node" / name).stat().st_mode) == 0o600
    assert len((tmp_path / "node" / "identity.key").read_bytes()) == 32
    assert (tmp_path / "node" / "hpke.key").read_text().splitlines()[0] == SUITE_HYBRID


def test_existing_hpke_key_keeps_its_suite(tmp_path: Path) -> None:
    first = NodeIdentity.load_or_create(tmp_path, hpke_suite=SUITE_X25519)
    again = NodeIdentity.load_or_create(tmp_path, hpke_suite=SUITE_HYBRID)
    assert again.hpke.suite == SUITE_X25519
    assert again.hpke.public_bytes() == first.hpke.public_bytes()


def test_malformed_key_files_fail(tmp_path: Path) -> None:
    (tmp_path / "identity.key").write_bytes(b"short")
    with pytest.raises(CryptoError):
        NodeIdentity.load_or_create(tmp_path)
    (tmp_path / "identity.key").unlink()
    (tmp_path / "hpke.key").write_text("x25519\nnot-hex\n")
    with pytest.raises(CryptoError):
        NodeIdentity.load_or_create(tmp_path)


def test_identity_signs_and_names_itself() -> None:
    identity = NodeIdentity.generate(hpke_suite=SUITE_X25519)
    assert identity.key_id == key_id(identity.public_key)
    signature = identity.sign(DOMAIN_AUTH, "testnet", b"nonce")
    verify(identity.public_key, DOMAIN_AUTH, "testnet", b"nonce", signature)
