"""`PaymentBook`: the payer's and the payee's halves, transactions, and kill -9."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.channel import verify_voucher_cell, voucher_cell
from cocoon.payments.book import PaymentBook
from cocoon.payments.errors import (
    BadVoucherSignature,
    LedgerError,
    VoucherError,
    VoucherNotNewer,
    VoucherOverDeposit,
    WrongVoucherChannel,
    WrongVoucherNetwork,
)
from cocoon.payments.vouchers import SignedVoucher, Voucher, sign_voucher, verify_voucher

from .killed import kill_payer_loop, recorded_nano

NETWORK = 7
CHANNEL = "0:" + "ab" * 32
OTHER_CHANNEL = "0:" + "cd" * 32
DEPOSIT = 1_000
PAYER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
PAYER_PUB = PAYER_KEY.public_key().public_bytes_raw()
STRANGER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
STRANGER_PUB = STRANGER_KEY.public_key().public_bytes_raw()

Snapshot = dict[str, list[tuple[object, ...]]]


def snapshot(path: Path) -> Snapshot:
    """Every row of the book's tables, read through a connection of its own."""
    db = sqlite3.connect(path)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("pay_channels", "pay_requests", "pay_expected")
        }
    finally:
        db.close()


@pytest.fixture
def payer_path(tmp_path: Path) -> Path:
    return tmp_path / "payer.sqlite"


@pytest.fixture
def payee_path(tmp_path: Path) -> Path:
    return tmp_path / "payee.sqlite"


@pytest.fixture
def payer(payer_path: Path) -> Iterator[PaymentBook]:
    book = PaymentBook(payer_path, network_id=NETWORK, key=PAYER_KEY)
    book.bind(CHANNEL, side="payer", peer="proxy", payer_key=PAYER_PUB, deposit_nano=DEPOSIT)
    yield book
    book.close()


@pytest.fixture
def payee(payee_path: Path) -> Iterator[PaymentBook]:
    book = PaymentBook(payee_path, network_id=NETWORK)
    book.bind(CHANNEL, side="payee", peer="client", payer_key=PAYER_PUB, deposit_nano=DEPOSIT)
    yield book
    book.close()


def voucher(
    seqno: int,
    total: int,
    *,
    channel: str = CHANNEL,
    network: int = NETWORK,
    key: Ed25519PrivateKey = PAYER_KEY,
) -> SignedVoucher:
    return sign_voucher(key, Voucher(channel, seqno, total), network)


# -- payer -----------------------------------------------------------------------------------


def test_pay_signs_cumulative_vouchers_with_rising_seqno(payer: PaymentBook) -> None:
    v1 = payer.pay(CHANNEL, "r1", 100, receipt_seq=0)
    v2 = payer.pay(CHANNEL, "r2", 50, receipt_seq=0)
    v3 = payer.pay(CHANNEL, "r1", 130, receipt_seq=1)  # a later receipt for r1: +30
    assert v1 is not None and v2 is not None and v3 is not None
    assert [(v.voucher.seqno, v.voucher.total_nano) for v in (v1, v2, v3)] == [
        (1, 100),
        (2, 150),
        (3, 180),
    ]
    for v in (v1, v2, v3):
        assert v.network == NETWORK and v.voucher.channel == CHANNEL
        verify_voucher(v, PAYER_PUB, network=NETWORK, channel=CHANNEL)
    row = payer.channel(CHANNEL)
    assert row is not None
    assert (row.seqno, row.total_nano, row.signature) == (3, 180, v3.signature)
    assert row.latest(NETWORK) == v3
    assert row.remaining_nano == DEPOSIT - 180
    assert payer.paid_for(CHANNEL, "r1") == 130 and payer.paid_for(CHANNEL, "r2") == 50
    assert payer.paid_for(CHANNEL, "never") == 0
    assert payer.totals()["paid_nano"] == 180


@pytest.mark.parametrize(
    ("amount", "receipt_seq"),
    [
        (200, 2),  # older receipt, even though it says more
        (200, 3),  # the same receipt again with another amount
        (100, 4),  # newer receipt that adds nothing
        (60, 5),  # newer receipt that says less
    ],
)
def test_pay_ignores_old_or_empty_receipts(
    payer: PaymentBook, payer_path: Path, amount: int, receipt_seq: int
) -> None:
    assert payer.pay(CHANNEL, "r1", 100, receipt_seq=3) is not None
    before = snapshot(payer_path)
    assert payer.pay(CHANNEL, "r1", amount, receipt_seq) is None
    assert snapshot(payer_path) == before


def test_pay_zero_for_a_new_request_signs_nothing(payer: PaymentBook, payer_path: Path) -> None:
    before = snapshot(payer_path)
    assert payer.pay(CHANNEL, "r0", 0, receipt_seq=0) is None
    assert snapshot(payer_path) == before


def test_pay_above_deposit_raises_and_writes_nothing(payer: PaymentBook, payer_path: Path) -> None:
    payer.pay(CHANNEL, "r1", 600, receipt_seq=0)
    payer.pay(CHANNEL, "r2", 300, receipt_seq=0)
    before = snapshot(payer_path)
    with pytest.raises(LedgerError, match="deposit"):
        payer.pay(CHANNEL, "r1", 701, receipt_seq=1)  # +101 > 100 left
    with pytest.raises(LedgerError, match="deposit"):
        payer.pay(CHANNEL, "r3", 101, receipt_seq=0)
    assert snapshot(payer_path) == before
    row = payer.channel(CHANNEL)
    assert row is not None and (row.seqno, row.total_nano) == (2, 900)
    assert payer.paid_for(CHANNEL, "r1") == 600
    # Exactly up to the deposit is fine, and a retry after a top-up goes through.
    v = payer.pay(CHANNEL, "r1", 700, receipt_seq=1)
    assert v is not None and v.voucher.total_nano == DEPOSIT
    payer.set_chain_state(CHANNEL, deposit_nano=2_000, redeemed_nano=0)
    v = payer.pay(CHANNEL, "r3", 101, receipt_seq=0)
    assert v is not None and (v.voucher.seqno, v.voucher.total_nano) == (4, 1_101)


def test_pay_refuses_without_key_negative_amount_or_wrong_side(
    payer_path: Path, payer: PaymentBook
) -> None:
    with pytest.raises(LedgerError, match="negative"):
        payer.pay(CHANNEL, "r1", -1, receipt_seq=0)
    with pytest.raises(LedgerError, match="not a payer channel"):
        payer.pay(OTHER_CHANNEL, "r1", 1, receipt_seq=0)
    payer.bind(OTHER_CHANNEL, side="payee", peer="x", payer_key=STRANGER_PUB, deposit_nano=9)
    with pytest.raises(LedgerError, match="not a payer channel"):
        payer.pay(OTHER_CHANNEL, "r1", 1, receipt_seq=0)
    keyless = PaymentBook(payer_path, network_id=NETWORK)
    try:
        with pytest.raises(LedgerError, match="no payer key"):
            keyless.pay(CHANNEL, "r1", 1, receipt_seq=0)
    finally:
        keyless.close()


def test_reopened_book_continues_from_stored_voucher(payer: PaymentBook, payer_path: Path) -> None:
    payer.pay(CHANNEL, "r1", 100, receipt_seq=0)
    last = payer.pay(CHANNEL, "r2", 40, receipt_seq=0)
    assert last is not None
    payer.close()
    reopened = PaymentBook(payer_path, network_id=NETWORK, key=PAYER_KEY)
    try:
        row = reopened.channel(CHANNEL)
        assert row is not None
        assert (row.seqno, row.total_nano) == (2, 140)
        assert row.latest(NETWORK) == last
        # Refreshing the binding (as at every start) keeps the vouchers.
        row = reopened.bind(
            CHANNEL, side="payer", peer="proxy2", payer_key=PAYER_PUB, deposit_nano=DEPOSIT
        )
        assert (row.seqno, row.total_nano, row.peer) == (2, 140, "proxy2")
        assert reopened.pay(CHANNEL, "r1", 100, receipt_seq=1) is None  # already paid
        v = reopened.pay(CHANNEL, "r1", 110, receipt_seq=1)
        assert v is not None and (v.voucher.seqno, v.voucher.total_nano) == (3, 150)
    finally:
        reopened.close()


def test_expect_round_trip_keeps_first_record(payer: PaymentBook) -> None:
    signers = [bytes([i]) * 32 for i in (1, 2, 3)]
    payer.expect(
        "req",
        CHANNEL,
        request_hash=b"h" * 32,
        signers=signers,
        max_coefficient_milli=1500,
        peer="w1",
    )
    payer.expect(
        "req",
        OTHER_CHANNEL,
        request_hash=b"x" * 32,
        signers=signers[:1],
        max_coefficient_milli=9,
        peer="w2",
    )
    got = payer.expected("req")
    assert got is not None
    assert got.request_id == "req" and got.channel == CHANNEL
    assert got.request_hash == b"h" * 32
    assert got.signers == tuple(signers)
    assert all(len(k) == 32 for k in got.signers)
    assert (got.max_coefficient_milli, got.peer) == (1500, "w1")
    payer.expect("bare", CHANNEL, request_hash=b"", signers=[], max_coefficient_milli=1000)
    bare = payer.expected("bare")
    assert bare is not None and bare.signers == () and bare.peer == ""
    assert payer.expected("unknown") is None


# -- payee -----------------------------------------------------------------------------------


def test_owe_grows_only_by_newer_larger_receipts(payee: PaymentBook, payee_path: Path) -> None:
    assert payee.owe(CHANNEL, "r1", 100, receipt_seq=0) == 100
    assert payee.owe(CHANNEL, "r1", 150, receipt_seq=1) == 50
    assert payee.owe(CHANNEL, "r2", 30, receipt_seq=4) == 30
    before = snapshot(payee_path)
    assert payee.owe(CHANNEL, "r1", 500, receipt_seq=1) == 0  # same receipt seq
    assert payee.owe(CHANNEL, "r1", 500, receipt_seq=0) == 0  # older receipt
    assert payee.owe(CHANNEL, "r1", 120, receipt_seq=2) == 0  # newer but smaller
    assert payee.owe(CHANNEL, "r2", 90, receipt_seq=3) == 0
    assert snapshot(payee_path) == before
    row = payee.channel(CHANNEL)
    assert row is not None and row.owed_nano == 180
    with pytest.raises(LedgerError, match="negative"):
        payee.owe(CHANNEL, "r3", -1, receipt_seq=0)
    with pytest.raises(LedgerError, match="not a payee channel"):
        payee.owe(OTHER_CHANNEL, "r3", 1, receipt_seq=0)


def refusals() -> list[tuple[str, SignedVoucher, type[VoucherError]]]:
    # The payee has accepted (seqno 2, total 200) on a deposit of 1000 when these arrive.
    relabelled = voucher(3, 300, channel=OTHER_CHANNEL)
    return [
        ("stranger's key", voucher(3, 300, key=STRANGER_KEY), BadVoucherSignature),
        ("other network", voucher(3, 300, network=NETWORK + 1), WrongVoucherNetwork),
        (
            "signed for another channel, relabelled",
            SignedVoucher(Voucher(CHANNEL, 3, 300), NETWORK, relabelled.signature),
            BadVoucherSignature,
        ),
        (
            "tampered total",
            SignedVoucher(Voucher(CHANNEL, 3, 900), NETWORK, voucher(3, 300).signature),
            BadVoucherSignature,
        ),
        ("replay", voucher(2, 200), VoucherNotNewer),
        ("same seqno, higher total", voucher(2, 300), VoucherNotNewer),
        ("lower seqno", voucher(1, 300), VoucherNotNewer),
        ("same total", voucher(3, 200), VoucherNotNewer),
        ("lower total", voucher(9, 150), VoucherNotNewer),
        ("above deposit", voucher(3, DEPOSIT + 1), VoucherOverDeposit),
        ("unknown channel", voucher(3, 300, channel=OTHER_CHANNEL), VoucherError),
    ]


@pytest.mark.parametrize(
    ("signed", "error"),
    [(v, e) for _, v, e in refusals()],
    ids=[name for name, _, _ in refusals()],
)
def test_accept_refuses_and_writes_nothing(
    payee: PaymentBook, payee_path: Path, signed: SignedVoucher, error: type[VoucherError]
) -> None:
    payee.owe(CHANNEL, "r1", 500, receipt_seq=0, receipt=b"receipt-1")
    assert payee.accept(voucher(2, 200), "r1") == 200
    before = snapshot(payee_path)
    with pytest.raises(error) as caught:
        payee.accept(signed, "r1")
    assert type(caught.value) is error  # the precise reason, not only a VoucherError
    assert snapshot(payee_path) == before


def test_accept_refuses_vouchers_for_a_payer_channel(payer: PaymentBook) -> None:
    with pytest.raises(VoucherError, match="unknown channel"):
        payer.accept(voucher(1, 1))


def test_verify_voucher_names_another_channel() -> None:
    with pytest.raises(WrongVoucherChannel):
        verify_voucher(voucher(1, 1), PAYER_PUB, network=NETWORK, channel=OTHER_CHANNEL)


def test_accepted_vouchers_settle_the_named_requests(payee: PaymentBook) -> None:
    payee.owe(CHANNEL, "r1", 100, receipt_seq=0, receipt=b"receipt-1")
    payee.owe(CHANNEL, "r2", 50, receipt_seq=0, receipt=b"receipt-2")
    payee.owe(CHANNEL, "r3", 30, receipt_seq=0)  # no receipt kept: nothing to invoice
    payee.owe(CHANNEL, "r4", 20, receipt_seq=0, receipt=b"receipt-4")
    assert payee.unsettled(CHANNEL) == [
        ("r1", b"receipt-1"),
        ("r2", b"receipt-2"),
        ("r4", b"receipt-4"),
    ]
    row = payee.channel(CHANNEL)
    assert row is not None and (row.owed_nano, row.unpaid_nano) == (200, 200)

    assert payee.accept(voucher(1, 60), "r1") == 60  # part of r1
    assert [r for r, _ in payee.unsettled(CHANNEL)] == ["r1", "r2", "r4"]
    assert payee.accept(voucher(2, 100), "r1") == 40  # the rest of r1
    assert [r for r, _ in payee.unsettled(CHANNEL)] == ["r2", "r4"]
    assert payee.accept(voucher(5, 150), "r2") == 50  # seqnos may skip
    assert payee.unsettled(CHANNEL) == [("r4", b"receipt-4")]
    assert payee.unsettled(CHANNEL, limit=0) == []

    row = payee.channel(CHANNEL)
    assert row is not None
    assert (row.seqno, row.total_nano, row.owed_nano, row.unpaid_nano) == (5, 150, 200, 50)
    assert row.latest(NETWORK) == voucher(5, 150)
    assert payee.totals()["owed_to_us_nano"] == 200
    assert payee.totals()["vouchered_to_us_nano"] == 150

    # A later receipt for a settled request makes it unsettled again.
    payee.owe(CHANNEL, "r1", 110, receipt_seq=1, receipt=b"receipt-1b")
    assert [r for r, _ in payee.unsettled(CHANNEL)] == ["r4", "r1"]

    payee.settle_all(CHANNEL)
    assert payee.unsettled(CHANNEL) == []
    row = payee.channel(CHANNEL)
    assert row is not None and row.unpaid_nano == 60  # settling marks requests, not money


def test_unpaid_is_owed_minus_vouchered_and_never_negative(payee: PaymentBook) -> None:
    payee.owe(CHANNEL, "r1", 100, receipt_seq=0)
    payee.accept(voucher(1, 70))
    row = payee.channel(CHANNEL)
    assert row is not None and row.unpaid_nano == 30
    payee.accept(voucher(2, 120))  # paid ahead of its receipts (the payer's own view)
    row = payee.channel(CHANNEL)
    assert row is not None and row.unpaid_nano == 0 and row.unredeemed_nano == 120


def test_set_chain_state_never_lowers(payee: PaymentBook) -> None:
    payee.set_chain_state(CHANNEL, deposit_nano=2_000, redeemed_nano=300)
    payee.set_chain_state(CHANNEL, deposit_nano=500, redeemed_nano=100)
    row = payee.channel(CHANNEL)
    assert row is not None and (row.deposit_nano, row.redeemed_nano) == (2_000, 300)
    payee.mark_redeemed(CHANNEL, 200)
    row = payee.channel(CHANNEL)
    assert row is not None and row.redeemed_nano == 300
    payee.mark_redeemed(CHANNEL, 400)
    row = payee.channel(CHANNEL)
    assert row is not None and row.redeemed_nano == 400
    # bind refreshes the deposit the same way.
    row = payee.bind(CHANNEL, side="payee", peer="client", payer_key=PAYER_PUB, deposit_nano=1_500)
    assert row.deposit_nano == 2_000
    # The raised deposit is what accept checks against.
    assert payee.accept(voucher(1, 1_800)) == 1_800


def test_bind_with_other_terms_raises(payee: PaymentBook, payee_path: Path) -> None:
    payee.accept(voucher(1, 10))
    before = snapshot(payee_path)
    with pytest.raises(LedgerError, match="other terms"):
        payee.bind(CHANNEL, side="payee", peer="c", payer_key=STRANGER_PUB, deposit_nano=DEPOSIT)
    with pytest.raises(LedgerError, match="other terms"):
        payee.bind(CHANNEL, side="payer", peer="c", payer_key=PAYER_PUB, deposit_nano=DEPOSIT)
    assert snapshot(payee_path) == before


# -- transactions ----------------------------------------------------------------------------


def test_exception_in_transaction_rolls_back_owe_and_pay(
    payer: PaymentBook, payer_path: Path
) -> None:
    payer.bind(OTHER_CHANNEL, side="payee", peer="c", payer_key=STRANGER_PUB, deposit_nano=9)
    payer.pay(CHANNEL, "r0", 10, receipt_seq=0)
    before = snapshot(payer_path)
    with pytest.raises(RuntimeError, match="boom"), payer.transaction():
        assert payer.owe(OTHER_CHANNEL, "in", 5, receipt_seq=0) == 5
        v = payer.pay(CHANNEL, "r1", 100, receipt_seq=0)
        assert v is not None and v.voucher.seqno == 2
        payer.set_chain_state(CHANNEL, deposit_nano=5_000, redeemed_nano=5)
        raise RuntimeError("boom")
    assert snapshot(payer_path) == before
    # The book is usable afterwards and signs the rolled-back seqno again.
    v = payer.pay(CHANNEL, "r1", 100, receipt_seq=0)
    assert v is not None and (v.voucher.seqno, v.voucher.total_nano) == (2, 110)


def test_nested_transactions_commit_only_at_the_outermost(
    payer: PaymentBook, payer_path: Path
) -> None:
    before = snapshot(payer_path)
    with payer.transaction():
        with payer.transaction():
            payer.pay(CHANNEL, "r1", 100, receipt_seq=0)  # pay's own transaction nests too
        # The inner block is over, but another connection sees nothing yet.
        assert snapshot(payer_path) == before
    after = snapshot(payer_path)
    assert after != before and after["pay_channels"][0][5:7] == (1, 100)

    with pytest.raises(KeyError), payer.transaction():
        payer.pay(CHANNEL, "r2", 50, receipt_seq=0)
        with payer.transaction():
            payer.pay(CHANNEL, "r3", 50, receipt_seq=0)
        raise KeyError("outer fails after the inner one finished")
    assert snapshot(payer_path) == after

    with pytest.raises(KeyError), payer.transaction():
        payer.pay(CHANNEL, "r2", 50, receipt_seq=0)
        with payer.transaction():
            raise KeyError("inner fails")
    assert snapshot(payer_path) == after
    v = payer.pay(CHANNEL, "r2", 50, receipt_seq=0)
    assert v is not None and (v.voucher.seqno, v.voucher.total_nano) == (2, 150)


# -- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_payer_killed_mid_loop_leaves_a_valid_voucher(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "payer.sqlite"
    kill_payer_loop(path, CHANNEL, NETWORK, seed, key_byte=1, cadence=False)
    book = PaymentBook(path, network_id=NETWORK, key=PAYER_KEY)
    try:
        row = book.channel(CHANNEL)
        assert row is not None and row.seqno >= 20
        latest = row.latest(NETWORK)
        assert latest is not None
        assert (latest.voucher.seqno, latest.voucher.total_nano) == (row.seqno, row.total_nano)
        verify_voucher(latest, PAYER_PUB, network=NETWORK, channel=CHANNEL)
        cell = voucher_cell(NETWORK, CHANNEL, row.seqno, row.total_nano)
        assert verify_voucher_cell(cell, latest.signature, PAYER_PUB)
        assert recorded_nano(path, CHANNEL) == row.total_nano
        v = book.pay(CHANNEL, "after-crash", 7, receipt_seq=0)
        assert v is not None
        assert (v.voucher.seqno, v.voucher.total_nano) == (row.seqno + 1, row.total_nano + 7)
    finally:
        book.close()
