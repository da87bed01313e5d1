import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto import (
    NodeIdentity,
    Receipt,
    ReceiptError,
    receipt_to_json,
    sha256,
    sign_receipt,
    verify_receipt,
)

NETWORK = "testnet"


def _receipt(key: Ed25519PrivateKey, **changes: object) -> Receipt:
    fields: dict[str, object] = {
        "network": NETWORK,
        "request_id": "req-1",
        "model": "smollm2@sha256:00",
        "worker_key": key.public_key().public_bytes_raw(),
        "prompt_tokens": 12,
        "cached_prompt_tokens": 4,
        "completion_tokens": 30,
        "request_hash": sha256(b"envelope"),
        "answer_hash": sha256(b"answer"),
        "answer_chunks": 7,
        "final": True,
        "started_ms": 1_000,
        "finished_ms": 1_500,
        "seq": 2,
    }
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


def test_roundtrip() -> None:
    key = Ed25519PrivateKey.generate()
    receipt = _receipt(key)
    data = sign_receipt(key, receipt)
    assert verify_receipt(data, NETWORK) == receipt
    assert verify_receipt(data, NETWORK, key.public_key().public_bytes_raw()) == receipt


def test_tampered_body_fails() -> None:
    key = Ed25519PrivateKey.generate()
    signed = msgspec.msgpack.decode(sign_receipt(key, _receipt(key)))
    body = msgspec.msgpack.decode(signed["body"])
    body["completion_tokens"] += 1
    forged = {"body": msgspec.msgpack.encode(body), "signature": signed["signature"]}
    with pytest.raises(ReceiptError):
        verify_receipt(msgspec.msgpack.encode(forged), NETWORK)


def test_every_flipped_byte_fails_but_the_body_signatures() -> None:
    """The cell signature covers the body's hash: it alone decides. The body signature
    (for peers of protocol 1.5 and before) is not read, unless asked for."""
    key = Ed25519PrivateKey.generate()
    receipt = _receipt(key)
    data = sign_receipt(key, receipt)
    body_signature = msgspec.msgpack.decode(data)["signature"]
    start = data.index(body_signature)
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        if start <= position < start + len(body_signature):
            assert verify_receipt(bytes(tampered), NETWORK) == receipt
            with pytest.raises(ReceiptError, match="bad receipt signature"):
                verify_receipt(bytes(tampered), NETWORK, body_signature=True)
            continue
        with pytest.raises(ReceiptError):
            verify_receipt(bytes(tampered), NETWORK)
    assert verify_receipt(data, NETWORK, body_signature=True) == receipt


def test_wrong_network_fails() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ReceiptError):
        verify_receipt(sign_receipt(key, _receipt(key)), "mainnet")


def test_receipt_claiming_another_network_fails() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ReceiptError):
        verify_receipt(sign_receipt(key, _receipt(key, network="mainnet")), NETWORK)


def test_wrong_worker_key_fails() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    data = sign_receipt(key, _receipt(key))
    with pytest.raises(ReceiptError):
        verify_receipt(data, NETWORK, other.public_key().public_bytes_raw())


def test_signed_by_someone_else_than_named_worker_fails() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(ReceiptError):
        verify_receipt(sign_receipt(other, _receipt(key)), NETWORK)


@pytest.mark.parametrize(
    "changes",
    [
        {"prompt_tokens": -1},
        {"completion_tokens": -5},
        {"reasoning_tokens": -1},
        {"seq": -1},
        {"finished_ms": 10},
        {"answer_hash": b"short"},
    ],
)
def test_invalid_fields_fail(changes: dict[str, object]) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ReceiptError):
        verify_receipt(sign_receipt(key, _receipt(key, **changes)), NETWORK)


def test_receipt_to_json_hexes_bytes() -> None:
    identity = NodeIdentity.generate()
    receipt = _receipt(identity.signing_key)
    as_json = receipt_to_json(receipt)
    assert as_json["worker_key"] == identity.public_key.hex()
    assert as_json["request_hash"] == sha256(b"envelope").hex()
    assert as_json["prompt_tokens"] == 12 and as_json["final"] is True
    msgspec.json.encode(as_json)


def test_a_receipt_signed_over_its_cell_alone_verifies_and_is_smaller() -> None:
    """Protocol 1.6: a worker signs the body too only for a reader of 1.5 or before."""
    key = Ed25519PrivateKey.generate()
    receipt = _receipt(key)
    both = sign_receipt(key, receipt)
    cell_only = sign_receipt(key, receipt, body_signature=False)
    assert msgspec.msgpack.decode(cell_only)["signature"] == b""
    assert len(both) - len(cell_only) == 64  # the signature (its header stays, 2 bytes)
    for data in (both, cell_only):
        assert verify_receipt(data, NETWORK) == receipt
        assert verify_receipt(data, NETWORK, body_signature=True) == receipt
    # Without the cell signature nothing is left to prove it.
    signed = msgspec.msgpack.decode(cell_only)
    signed["cell_signature"] = b""
    with pytest.raises(ReceiptError, match="cell signature"):
        verify_receipt(msgspec.msgpack.encode(signed), NETWORK)
