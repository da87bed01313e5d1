import pytest

from cocoon.crypto import SUITE_HYBRID, SUITE_X25519, HpkeKeyPair, SealError, load_public_key


@pytest.mark.parametrize(
    ("suite", "private_len", "public_len"),
    [(SUITE_HYBRID, 96, 1216), (SUITE_X25519, 32, 32)],
)
def test_key_lengths_and_private_roundtrip(suite: str, private_len: int, public_len: int) -> None:
    keypair = HpkeKeyPair.generate(suite)
    assert keypair.suite == suite
    assert len(keypair.private_bytes()) == private_len
    assert len(keypair.public_bytes()) == public_len
    again = HpkeKeyPair.from_private_bytes(suite, keypair.private_bytes())
    assert again.public_bytes() == keypair.public_bytes()
    load_public_key(suite, keypair.public_bytes())


def test_default_suite_is_hybrid() -> None:
    assert HpkeKeyPair.generate().suite == SUITE_HYBRID


@pytest.mark.parametrize(
    ("suite", "data"),
    [("rsa", bytes(32)), (SUITE_X25519, bytes(31)), (SUITE_HYBRID, bytes(32))],
)
def test_load_public_key_rejects_bad_suite_or_length(suite: str, data: bytes) -> None:
    with pytest.raises(SealError):
        load_public_key(suite, data)


@pytest.mark.parametrize(("suite", "data"), [("rsa", bytes(32)), (SUITE_HYBRID, bytes(32))])
def test_from_private_bytes_rejects_bad_suite_or_length(suite: str, data: bytes) -> None:
    with pytest.raises(SealError):
        HpkeKeyPair.from_private_bytes(suite, data)
