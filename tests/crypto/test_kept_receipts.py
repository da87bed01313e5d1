"""A worker's small copy of a receipt signs again into the receipt it sent."""

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto import Receipt, ReceiptError, sha256, sign_receipt, verify_receipt
from cocoon.crypto.kept_receipts import KEPT_FIELDS, keep_receipt, sign_kept_receipt
from cocoon.crypto.receipts import decode_signed_receipt

NETWORK = "testnet"


def _receipt(key: Ed25519PrivateKey, **changes: object) -> Receipt:
    fields: dict[str, object] = {
        "network": NETWORK,
        "request_id": "01a245682c6aaa8ebd6dd004f6cb10f3",
        "model": "smollm2@sha256:00",
        "worker_key": key.public_key().public_bytes_raw(),
        "prompt_tokens": 12,
        "cached_prompt_tokens": 4,
        "completion_tokens": 30,
        "reasoning_tokens": 9,
        "request_hash": sha256(b"envelope"),
        "answer_hash": sha256(b"answer"),
        "answer_chunks": 7,
        "final": False,
        "started_ms": 1_796_460_778_759,
        "finished_ms": 1_796_460_778_774,
        "seq": 2**48 + 3,
        "coefficient_milli": 1_250,
    }
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("body_signature", [True, False])
def test_a_kept_copy_signs_again_into_the_same_receipt(body_signature: bool) -> None:
    key = Ed25519PrivateKey.generate()
    receipt = _receipt(key)
    sent = sign_receipt(key, receipt, body_signature=body_signature)
    kept = keep_receipt(receipt)
    assert len(kept) * 3 < len(sent)
    again = sign_kept_receipt(key, NETWORK, receipt.request_id, kept)
    if body_signature:
        assert again == sent
    # Without a body signature sent, the copy has one more (for old readers): the same
    # body and cell, so the same receipt to anyone who compares them.
    signed_sent, _ = decode_signed_receipt(sent)
    signed_again, decoded = decode_signed_receipt(again)
    assert signed_again.body == signed_sent.body
    assert signed_again.cell_signature == signed_sent.cell_signature
    assert decoded == receipt
    assert verify_receipt(again, NETWORK, key.public_key().public_bytes_raw()) == receipt


def test_every_field_but_the_rows_own_is_kept() -> None:
    assert set(KEPT_FIELDS) | {"network", "request_id"} == set(Receipt.__struct_fields__)
    key = Ed25519PrivateKey.generate()
    for changes in ({"final": True, "seq": 0}, {"cached_prompt_tokens": 0, "model": "m"}):
        receipt = _receipt(key, **changes)
        again = sign_kept_receipt(key, NETWORK, receipt.request_id, keep_receipt(receipt))
        assert decode_signed_receipt(again)[1] == receipt


def test_a_receipt_kept_whole_by_an_older_book_is_invoiced_as_it_is() -> None:
    key = Ed25519PrivateKey.generate()
    whole = sign_receipt(key, _receipt(key))
    assert sign_kept_receipt(key, NETWORK, "any", whole) == whole


@pytest.mark.parametrize(
    ("kept", "error"),
    [
        (b"", "malformed"),
        (b"\x93\x01", "malformed"),
        (msgspec.msgpack.encode([2, 1, 2]), "version 2"),
        (msgspec.msgpack.encode([1, "model"]), "1 fields"),
    ],
)
def test_what_is_not_a_kept_receipt_is_refused(kept: bytes, error: str) -> None:
    with pytest.raises(ReceiptError, match=error):
        sign_kept_receipt(Ed25519PrivateKey.generate(), NETWORK, "r", kept)


def test_a_copy_kept_under_another_key_is_not_signed() -> None:
    key = Ed25519PrivateKey.generate()
    receipt = _receipt(key)
    with pytest.raises(ReceiptError, match="another key"):
        sign_kept_receipt(
            Ed25519PrivateKey.generate(), NETWORK, receipt.request_id, keep_receipt(receipt)
        )
