"""The book keeps its channel rows in memory and writes a request's row first: what it
holds must always be what the file holds, whatever is rolled back, and a receipt must
count once whichever path (first receipt, later receipt, older receipt) it takes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments.book import ChannelRow, PaymentBook
from cocoon.payments.errors import LedgerError

NETWORK = 7
CHANNEL = "0:" + "ab" * 32
DEPOSIT = 1_000
KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
PUB = KEY.public_key().public_bytes_raw()


def on_disk(path: Path) -> ChannelRow:
    """The channel as a fresh book (no rows in memory) reads it from the file."""
    book = PaymentBook(path, network_id=NETWORK)
    try:
        row = book.channel(CHANNEL)
        assert row is not None
        return row
    finally:
        book.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "book.sqlite"


@pytest.fixture
def payer(path: Path) -> Iterator[PaymentBook]:
    book = PaymentBook(path, network_id=NETWORK, key=KEY)
    book.bind(CHANNEL, side="payer", peer="proxy", payer_key=PUB, deposit_nano=DEPOSIT)
    yield book
    book.close()


def test_rows_in_memory_follow_every_write(payer: PaymentBook, path: Path) -> None:
    payer.incur(CHANNEL, "r1", 100, 0)
    payer.incur(CHANNEL, "r1", 250, 1)  # a later receipt: read back, grows by 150
    assert payer.incur(CHANNEL, "r1", 200, 2) is None  # less than owed: nothing
    assert payer.incur(CHANNEL, "r1", 300, 1) is None  # an older seq: nothing
    payer.incur(CHANNEL, "r2", 50, 0)
    payer.voucher(CHANNEL)
    payer.set_chain_state(CHANNEL, deposit_nano=2 * DEPOSIT, redeemed_nano=120)
    assert payer.channel(CHANNEL) == on_disk(path)
    row = on_disk(path)
    assert (row.owed_nano, row.total_nano, row.deposit_nano, row.redeemed_nano) == (
        300,
        300,
        2 * DEPOSIT,
        120,
    )


def test_a_rolled_back_write_leaves_memory_as_the_file(payer: PaymentBook, path: Path) -> None:
    payer.incur(CHANNEL, "r1", 100, 0)
    with pytest.raises(RuntimeError), payer.transaction():
        payer.incur(CHANNEL, "r2", 400, 0)
        payer.voucher(CHANNEL)
        raise RuntimeError("the caller fails after the book wrote")
    assert payer.channel(CHANNEL) == on_disk(path)
    row = payer.channel(CHANNEL)
    assert row is not None and (row.owed_nano, row.total_nano, row.seqno) == (100, 0, 0)
    assert payer.paid_for(CHANNEL, "r2") == 0


def test_a_first_receipt_above_the_deposit_writes_nothing(payer: PaymentBook, path: Path) -> None:
    payer.incur(CHANNEL, "r1", 900, 0)
    with pytest.raises(LedgerError):
        payer.incur(CHANNEL, "r2", 200, 0)
    assert payer.channel(CHANNEL) == on_disk(path)
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT request_id FROM pay_requests").fetchall() == [("r1",)]
    finally:
        db.close()


def test_a_payee_counts_each_receipt_once(tmp_path: Path) -> None:
    path = tmp_path / "payee.sqlite"
    payee = PaymentBook(path, network_id=NETWORK)
    payee.bind(CHANNEL, side="payee", peer="client", payer_key=PUB, deposit_nano=DEPOSIT)
    assert payee.owe(CHANNEL, "r1", 100, 0, b"first") == 100
    assert payee.owe(CHANNEL, "r1", 100, 0, b"again") == 0  # the same receipt again
    assert payee.owe(CHANNEL, "r1", 160, 1, b"later") == 60
    assert payee.owe(CHANNEL, "r1", 150, 2, b"less") == 0
    assert payee.owe(CHANNEL, "r2", 0, 0, b"free") == 0
    assert payee.channel(CHANNEL) == on_disk(path)
    assert on_disk(path).owed_nano == 160
    assert dict(payee.unsettled(CHANNEL)) == {"r1": b"later"}
    payee.close()


def test_invoices_are_the_newest_unpaid_rows(tmp_path: Path) -> None:
    """A reconnect invoices at most `limit` rows: the newest, where a receipt lost in a
    crash is, not the oldest (a payer that left old rows unpaid must not hide it)."""
    path = tmp_path / "payee.sqlite"
    payee = PaymentBook(path, network_id=NETWORK)
    payee.bind(CHANNEL, side="payee", peer="client", payer_key=PUB, deposit_nano=DEPOSIT)
    for i in range(5):
        payee.owe(CHANNEL, f"r{i}", 10, 0, f"receipt-{i}".encode())
        # Distinct times, as rows written in different turns have.
        db = sqlite3.connect(path)
        db.execute("UPDATE pay_requests SET updated_at = ? WHERE request_id = ?", (i, f"r{i}"))
        db.commit()
        db.close()
    assert [rid for rid, _ in payee.unsettled(CHANNEL, limit=2)] == ["r3", "r4"]
    assert [rid for rid, _ in payee.unsettled(CHANNEL)] == [f"r{i}" for i in range(5)]
    payee.close()
