import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pytoniq_core.boc import Builder

from cocoon.crypto import Receipt, ReceiptError, sha256, sign_receipt, verify_receipt
from cocoon.crypto.receipt_cell import (
    RECEIPT_CELL_TAG,
    network_hash,
    receipt_cell_data,
    receipt_cell_hash,
)
from cocoon.crypto.receipts import EquivocationProof, equivocation_proof
from cocoon.crypto.signing import ed25519_verify

NETWORK = "testnet"


def _receipt(key: Ed25519PrivateKey, **changes: object) -> Receipt:
    fields: dict[str, object] = {
        "network": NETWORK,
        "request_id": "req-1",
        "model": "m",
        "worker_key": key.public_key().public_bytes_raw(),
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "request_hash": sha256(b"envelope"),
        "answer_hash": sha256(b"answer"),
        "answer_chunks": 7,
        "final": False,
        "started_ms": 1_000,
        "finished_ms": 1_500,
        "seq": 2,
    }
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


@given(
    network=st.text(max_size=30),
    request_id=st.text(max_size=60),
    seq=st.integers(min_value=0, max_value=2**64 - 1),
    body=st.binary(max_size=300),
)
def test_hand_hash_is_pytoniqs_cell_hash(
    network: str, request_id: str, seq: int, body: bytes
) -> None:
    cell = (
        Builder()
        .store_uint(RECEIPT_CELL_TAG, 32)
        .store_bytes(sha256(network.encode()))
        .store_bytes(sha256(request_id.encode()))
        .store_uint(seq, 64)
        .store_bytes(sha256(body))
        .end_cell()
    )
    assert receipt_cell_data(network, request_id, seq, body) == cell.begin_parse().load_bytes(108)
    assert receipt_cell_hash(network, request_id, seq, body) == cell.hash


def test_network_id_is_the_names_sha256() -> None:
    assert network_hash("local") == sha256(b"local")


def test_seq_beyond_uint64_cannot_be_signed() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ReceiptError):
        sign_receipt(key, _receipt(key, seq=2**64))


def test_a_64_bit_seq_is_signed_and_its_high_bits_matter() -> None:
    # The worker packs (boot << 48) | (run << 16) | index: every bit is part of the slot.
    key = Ed25519PrivateKey.generate()
    seq = (3 << 48) | (5 << 16) | 2
    signed = sign_receipt(key, _receipt(key, seq=seq))
    assert verify_receipt(signed, NETWORK).seq == seq
    body = msgspec.msgpack.decode(signed)["body"]
    assert receipt_cell_data(NETWORK, "req-1", seq, body)[68:76] == seq.to_bytes(8, "big")
    assert receipt_cell_hash(NETWORK, "req-1", seq, body) != receipt_cell_hash(
        NETWORK, "req-1", seq & 0xFFFF_FFFF, body
    )
    # receipts for one request in two runs are two slots, not equivocation
    other = sign_receipt(key, _receipt(key, seq=(3 << 48) | (6 << 16) | 2, completion_tokens=1))
    with pytest.raises(ReceiptError, match="different"):
        equivocation_proof(signed, other)
    max_seq = sign_receipt(key, _receipt(key, seq=2**64 - 1))
    assert verify_receipt(max_seq, NETWORK).seq == 2**64 - 1


def test_worker_signs_the_cell_hash_with_its_node_key() -> None:
    key = Ed25519PrivateKey.generate()
    signed = msgspec.msgpack.decode(sign_receipt(key, _receipt(key)))
    cell_hash = receipt_cell_hash(NETWORK, "req-1", 2, signed["body"])
    assert ed25519_verify(key.public_key().public_bytes_raw(), signed["cell_signature"], cell_hash)


@pytest.mark.parametrize("cell_signature", [None, b"", bytes(64), "x"])
def test_receipt_without_a_valid_cell_signature_is_refused(cell_signature: object) -> None:
    key = Ed25519PrivateKey.generate()
    signed = msgspec.msgpack.decode(sign_receipt(key, _receipt(key)))
    if cell_signature is None:
        del signed["cell_signature"]
    else:
        signed["cell_signature"] = cell_signature
    with pytest.raises(ReceiptError):
        verify_receipt(msgspec.msgpack.encode(signed), NETWORK)
    # ... unless the reader asked to check no signature at all (it trusts a MAC instead).
    if isinstance(cell_signature, bytes | None):
        verify_receipt(msgspec.msgpack.encode(signed), NETWORK, signature=False)


def test_two_different_bodies_for_one_seq_prove_equivocation() -> None:
    key = Ed25519PrivateKey.generate()
    a = sign_receipt(key, _receipt(key, completion_tokens=30))
    b = sign_receipt(key, _receipt(key, completion_tokens=31))
    proof = equivocation_proof(a, b)
    assert isinstance(proof, EquivocationProof)
    assert proof.worker_key == key.public_key().public_bytes_raw()
    # tag, network, request key and seq agree; the body hashes differ
    assert proof.data_a[:76] == proof.data_b[:76] and proof.data_a[76:] != proof.data_b[76:]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({}, "same body"),
        ({"seq": 3}, "different"),
        ({"request_id": "req-2"}, "different"),
        ({"network": "other"}, "different"),
    ],
)
def test_pairs_that_are_not_equivocation_are_refused(changes: dict[str, object], why: str) -> None:
    key = Ed25519PrivateKey.generate()
    a = sign_receipt(key, _receipt(key))
    b = sign_receipt(key, _receipt(key, **changes))
    with pytest.raises(ReceiptError, match=why):
        equivocation_proof(a, b)


def test_pair_from_two_workers_or_with_a_forged_half_is_refused() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    a = sign_receipt(key, _receipt(key))
    with pytest.raises(ReceiptError, match="different workers"):
        equivocation_proof(a, sign_receipt(other, _receipt(other, completion_tokens=1)))
    forged = msgspec.msgpack.decode(sign_receipt(key, _receipt(key, completion_tokens=1)))
    forged["cell_signature"] = bytes(64)
    with pytest.raises(ReceiptError, match="cell signature"):
        equivocation_proof(a, msgspec.msgpack.encode(forged))


def test_watch_reports_a_conflicting_receipt_for_a_seen_slot() -> None:
    from cocoon.crypto.receipts import EquivocationWatch

    key = Ed25519PrivateKey.generate()
    watch = EquivocationWatch(max_slots=2)
    a = sign_receipt(key, _receipt(key))
    assert watch.observe(a, verify_receipt(a, NETWORK)) is None
    assert watch.observe(a, verify_receipt(a, NETWORK)) is None  # the same receipt again
    b = sign_receipt(key, _receipt(key, completion_tokens=99))
    pair = watch.observe(b, verify_receipt(b, NETWORK))
    assert pair == (a, b)
    equivocation_proof(*pair)
    # other slots are not conflicts; the oldest are forgotten past max_slots
    for seq in (3, 4):
        c = sign_receipt(key, _receipt(key, seq=seq))
        assert watch.observe(c, verify_receipt(c, NETWORK)) is None
    assert watch.observe(b, verify_receipt(b, NETWORK)) is None
