"""The checks a receipt passes before the proxy bills it, and which signatures it checks."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto.errors import ReceiptError
from cocoon.crypto.receipts import Receipt, decode_signed_receipt, sign_receipt
from cocoon.proxy.billing import Biller
from cocoon.wire.messages import Request

from .receipts import KEY, PUBLIC, RECEIPT

REQUEST = Request("r1", "m", 1000, 16, 1000, ["w"], b"sealed")


def _signed(seq: int = 0) -> bytes:
    return sign_receipt(KEY, msgspec.structs.replace(RECEIPT, seq=seq))


def _spoiled(seq: int = 0) -> bytes:
    """A receipt right in every field but its cell signature."""
    signed, _ = decode_signed_receipt(_signed(seq))
    spoiled = msgspec.structs.replace(signed, cell_signature=bytes(64))
    return msgspec.msgpack.encode(spoiled)


def _check(biller: Biller, data: bytes) -> Receipt:
    return biller.check(data, REQUEST, worker_key=PUBLIC, coefficient_milli=1000)


class _Draws:
    """The biller's random draws, given in order."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def test_a_workers_first_receipt_is_checked_in_full() -> None:
    biller = Biller("n", signature_every=32, draw=_Draws())
    with pytest.raises(ReceiptError, match="signature"):
        _check(biller, _spoiled())
    assert _check(biller, _signed(1)).seq == 1
    assert biller.signatures_checked == 2


def test_later_receipts_have_their_signature_checked_when_drawn() -> None:
    # 1 in 4: a draw under 0.25 checks the signature.
    biller = Biller("n", signature_every=4, draw=_Draws(0.9, 0.5, 0.2))
    _check(biller, _signed(0))  # the first: checked, draws nothing
    _check(biller, _spoiled(1))  # not drawn: billed on the link's word
    _check(biller, _spoiled(2))
    with pytest.raises(ReceiptError, match="signature"):
        _check(biller, _spoiled(3))
    assert biller.signatures_checked == 2


def test_a_worker_whose_signature_failed_is_checked_in_full_from_then_on() -> None:
    biller = Biller("n", signature_every=1000, draw=lambda: 0.0)
    _check(biller, _signed(0))
    with pytest.raises(ReceiptError):
        _check(biller, _spoiled(1))
    # Never drawn again, and yet each one is checked.
    biller._draw = lambda: 0.99
    for seq in (2, 3):
        _check(biller, _signed(seq))
        with pytest.raises(ReceiptError, match="signature"):
            _check(biller, _spoiled(seq))
    assert biller.signatures_checked == 6


def test_every_one_checks_each_signature() -> None:
    biller = Biller("n", draw=_Draws())
    for seq in range(3):
        _check(biller, _signed(seq))
    with pytest.raises(ReceiptError, match="signature"):
        _check(biller, _spoiled(3))
    assert biller.signatures_checked == 4


def test_the_fields_are_checked_whether_or_not_the_signature_is() -> None:
    biller = Biller("n", signature_every=1000, draw=lambda: 0.99)
    _check(biller, _signed(0))
    other = Request("r2", "m", 1000, 16, 1000, ["w"], b"sealed")
    with pytest.raises(ReceiptError, match="another request"):
        biller.check(_signed(1), other, worker_key=PUBLIC, coefficient_milli=1000)
    stranger = Ed25519PrivateKey.generate()
    theirs = msgspec.structs.replace(RECEIPT, worker_key=stranger.public_key().public_bytes_raw())
    with pytest.raises(ReceiptError, match="another worker"):
        _check(biller, sign_receipt(stranger, theirs))
    with pytest.raises(ReceiptError, match="price coefficient"):
        biller.check(_signed(2), REQUEST, worker_key=PUBLIC, coefficient_milli=900)
