"""What a payee invoices again: only what a quiet channel leaves unpaid.

A payee's book over real SQLite, its vouchers signed by a real payer key: a
voucher that covers all that is owed settles every request of the channel,
one that covers part settles none it does not name, and the settle tick's
invoices wait until no receipt was owed for a while (while answers flow, the
unpaid amount is the payer's cadence, not a lost receipt).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments.book import PaymentBook
from cocoon.payments.link import ChainLink
from cocoon.payments.sides import PayeeSide
from cocoon.payments.vouchers import SignedVoucher, Voucher, sign_voucher
from cocoon.wire.messages import Invoice

NETWORK_ID = 7
CHANNEL = "0:" + "1c" * 32
KEY = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
PUB = KEY.public_key().public_bytes_raw()
AGE_S = 10.0


@dataclass
class StubLink:
    """The little of a ChainLink the payee uses off chain (the chain is the edge)."""

    key: Ed25519PrivateKey
    network_id: int


@pytest.fixture
def side(tmp_path: Path) -> Iterator[PayeeSide]:
    book = PaymentBook(tmp_path / "payee.sqlite", network_id=NETWORK_ID)
    book.bind(CHANNEL, side="payee", peer="payer", payer_key=PUB, deposit_nano=10**9)
    yield PayeeSide(
        book,
        cast(ChainLink, StubLink(KEY, NETWORK_ID)),
        network="cocoon-test",
        max_credit_nano=10**6,
        redeem_threshold_nano=10**9,
    )
    book.close()


def voucher(seqno: int, total: int) -> SignedVoucher:
    return sign_voucher(KEY, Voucher(CHANNEL, seqno, total), NETWORK_ID)


def test_a_voucher_for_all_owed_settles_every_request(side: PayeeSide) -> None:
    book = side.book
    for i in range(3):
        book.owe(CHANNEL, f"r{i}", 100, 0, f"receipt-{i}".encode())
    assert book.accept(voucher(1, 250)) == 250
    # Part paid: which requests a cumulative voucher covers is unknown; none is settled.
    assert [rid for rid, _ in book.unsettled(CHANNEL)] == ["r0", "r1", "r2"]
    assert book.accept(voucher(2, 300)) == 50
    assert book.unsettled(CHANNEL) == []
    # A receipt after that is unsettled again until it is paid.
    book.owe(CHANNEL, "r3", 40, 0, b"receipt-3")
    assert book.unsettled(CHANNEL) == [("r3", b"receipt-3")]


def test_invoices_wait_until_the_channel_is_quiet(side: PayeeSide) -> None:
    side.owe(CHANNEL, "lost", 70, 0, b"receipt-lost")
    side.owe(CHANNEL, "seen", 30, 0, b"receipt-seen")
    owed_at = time.monotonic()
    side.book.accept(voucher(1, 30))  # the payer paid what it saw
    # Just owed: the unpaid 70 may be on the payer's cadence; nothing is invoiced.
    assert side.overdue(CHANNEL, AGE_S, now=owed_at + AGE_S / 2) == []
    # Quiet for the whole age and still unpaid: both unsettled receipts are invoiced
    # (`before` is wall-clock: their rows are older than now minus no time at all).
    invoices = side.overdue(CHANNEL, 0.0, now=owed_at + AGE_S)
    assert invoices == [Invoice("lost", b"receipt-lost"), Invoice("seen", b"receipt-seen")]
    # A new receipt makes the channel busy again: no invoice until it is quiet.
    side.owe(CHANNEL, "next", 10, 0, b"receipt-next")
    assert side.overdue(CHANNEL, AGE_S) == []
    # Paid up: nothing to invoice, however long it has been quiet.
    side.book.accept(voucher(2, 110))
    assert side.overdue(CHANNEL, 0.0, now=time.monotonic() + AGE_S) == []


def test_a_request_owed_without_its_receipt_is_invoiced_with_the_one_kept_elsewhere(
    tmp_path: Path,
) -> None:
    """The proxy's ledger keeps every receipt it billed; its book owes a client's request
    without a second copy and invoices it with the ledger's. A request whose receipt is
    nowhere is not invoiced (there is nothing to prove it with)."""
    kept = {"r0": b"ledger-0", "r2": b"ledger-2"}
    book = PaymentBook(
        tmp_path / "payee.sqlite",
        network_id=NETWORK_ID,
        receipts=lambda request_id, own: own or kept.get(request_id),
    )
    book.bind(CHANNEL, side="payee", peer="payer", payer_key=PUB, deposit_nano=10**9)
    book.owe(CHANNEL, "r0", 100, 0, None)
    book.owe(CHANNEL, "r1", 100, 0, None)
    book.owe(CHANNEL, "r2", 100, 0, b"own-2")  # the ledger holds another: this one is kept
    assert book.unsettled(CHANNEL) == [("r0", b"ledger-0"), ("r2", b"own-2")]
    (stored,) = book._db.execute("SELECT receipt FROM pay_requests WHERE request_id = 'r0'")
    assert stored == (b"",)
    book.close()
