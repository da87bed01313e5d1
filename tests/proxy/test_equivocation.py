"""The proxy proves a worker's contradicting receipts (the chain part: tests/chain)."""

from __future__ import annotations

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto.receipts import sign_receipt
from cocoon.proxy.equivocation import Equivocations

from .receipts import KEY, PUBLIC, RECEIPT


def test_a_second_receipt_for_a_slot_with_other_contents_is_a_proof() -> None:
    desk = Equivocations(None, None)
    billed = sign_receipt(KEY, RECEIPT)
    inflated = sign_receipt(KEY, msgspec.structs.replace(RECEIPT, completion_tokens=70))
    assert desk.compare(billed, inflated, PUBLIC, "0:" + "ab" * 32)
    assert desk.found == 1
    # Without a root and a wallet it is recorded, not sent.
    assert desk.status()["failures"]


def test_the_same_receipt_or_another_slot_is_not() -> None:
    desk = Equivocations(None, None)
    billed = sign_receipt(KEY, RECEIPT)
    assert not desk.compare(billed, billed, PUBLIC, "")
    later = sign_receipt(KEY, msgspec.structs.replace(RECEIPT, seq=1, completion_tokens=70))
    assert not desk.compare(billed, later, PUBLIC, "")
    other = Ed25519PrivateKey.generate()
    forged = sign_receipt(
        other,
        msgspec.structs.replace(
            RECEIPT, worker_key=other.public_key().public_bytes_raw(), completion_tokens=70
        ),
    )
    assert not desk.compare(billed, forged, PUBLIC, "")
    assert desk.found == 0
