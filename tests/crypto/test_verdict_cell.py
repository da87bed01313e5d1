import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pytoniq_core.boc import Address, Builder

from cocoon.crypto.signing import ed25519_verify
from cocoon.crypto.verdict_cell import (
    VERDICT_TAG,
    Verdict,
    VerdictError,
    decode_signed_verdict,
    sign_verdict,
    verdict_cell_hash,
)

STAKE = "0:" + "ab" * 32


@given(
    network_id=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    workchain=st.sampled_from([0, -1]),
    account=st.binary(min_size=32, max_size=32),
    worker_key=st.binary(min_size=32, max_size=32),
    evidence=st.binary(min_size=32, max_size=32),
    slash_bp=st.integers(min_value=1, max_value=10_000),
    nonce=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_hand_hash_is_pytoniqs_cell_hash(
    network_id: int,
    workchain: int,
    account: bytes,
    worker_key: bytes,
    evidence: bytes,
    slash_bp: int,
    nonce: int,
) -> None:
    stake = f"{workchain}:{account.hex()}"
    cell = (
        Builder()
        .store_uint(VERDICT_TAG, 32)
        .store_int(network_id, 32)
        .store_address(Address(stake))
        .store_bytes(worker_key)
        .store_bytes(evidence)
        .store_uint(slash_bp, 16)
        .store_uint(nonce, 64)
        .end_cell()
    )
    v = Verdict(
        network_id=network_id,
        stake=stake,
        worker_key=worker_key,
        evidence_hash=evidence,
        slash_bp=slash_bp,
        nonce=nonce,
    )
    assert verdict_cell_hash(v) == cell.hash


def test_sign_and_decode() -> None:
    key = Ed25519PrivateKey.generate()
    data = sign_verdict(key, 7, b"\x01" * 32, STAKE.upper(), b"\x02" * 32, 2500, 3)
    sv = decode_signed_verdict(data)
    assert sv.verifier_key == key.public_key().public_bytes_raw()
    assert sv.verdict.stake == STAKE and sv.verdict.slash_bp == 2500 and sv.verdict.nonce == 3
    assert ed25519_verify(sv.verifier_key, sv.signature, verdict_cell_hash(sv.verdict))


def test_tampered_verdict_or_garbage_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    sv = msgspec.msgpack.decode(sign_verdict(key, 7, b"\x01" * 32, STAKE, b"\x02" * 32, 2500, 3))
    sv["verdict"]["slash_bp"] = 10_000
    with pytest.raises(VerdictError, match="signature"):
        decode_signed_verdict(msgspec.msgpack.encode(sv))
    with pytest.raises(VerdictError, match="malformed"):
        decode_signed_verdict(b"\x93garbage")


@pytest.mark.parametrize(
    "changes",
    [
        {"slash_bp": 0},
        {"slash_bp": 10_001},
        {"nonce": -1},
        {"nonce": 2**64},
        {"network_id": 2**31},
        {"stake_address": "EQabc"},
        {"worker_key": b"short"},
        {"evidence_hash": b"\x00" * 31},
    ],
)
def test_out_of_range_verdicts_cannot_be_signed(changes: dict[str, object]) -> None:
    args: dict[str, object] = {
        "network_id": 7,
        "worker_key": b"\x01" * 32,
        "stake_address": STAKE,
        "evidence_hash": b"\x02" * 32,
        "slash_bp": 2500,
        "nonce": 3,
    }
    args.update(changes)
    with pytest.raises(VerdictError):
        sign_verdict(Ed25519PrivateKey.generate(), **args)  # type: ignore[arg-type]
