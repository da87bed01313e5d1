"""Many first receipts at once (`PaymentBook.owe_new`, `incur_new`, payments/new_rows.py):
the same rows as one by one, or nothing at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments.book import PaymentBook

NETWORK = 7
CHANNEL = "0:" + "ab" * 32
OTHER = "0:" + "cd" * 32
KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
PUB = KEY.public_key().public_bytes_raw()


def book(path: Path, side: str, deposit: int = 1_000, **kw: object) -> PaymentBook:
    b = PaymentBook(path, network_id=NETWORK, key=KEY if side == "payer" else None, **kw)  # type: ignore[arg-type]
    for channel in (CHANNEL, OTHER):
        b.bind(channel, side=side, peer="peer", payer_key=PUB, deposit_nano=deposit)  # type: ignore[arg-type]
    return b


def rows(path: Path) -> list[tuple[object, ...]]:
    """Request rows as written, but for the time they were written."""
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT channel, request_id, amount_nano, settled_nano, receipt_seq, receipt"
            " FROM pay_requests ORDER BY channel, request_id"
        ).fetchall()
    finally:
        db.close()


PAYEE_ITEMS = [
    (CHANNEL, "r1", 100, 0, b"receipt-1"),
    (CHANNEL, "r2", 50, 1, b"receipt-2"),
    (OTHER, "r3", 7, 2, b"receipt-3"),
]


def test_payee_rows_and_totals_are_those_of_one_by_one(tmp_path: Path) -> None:
    one, many = book(tmp_path / "one.sqlite", "payee"), book(tmp_path / "many.sqlite", "payee")
    for item in PAYEE_ITEMS:
        one.owe(*item)
    assert many.owe_new(PAYEE_ITEMS)
    assert rows(tmp_path / "many.sqlite") == rows(tmp_path / "one.sqlite")
    for channel, owed in ((CHANNEL, 150), (OTHER, 7)):
        assert many.channel(channel).owed_nano == one.channel(channel).owed_nano == owed  # type: ignore[union-attr]
    # Read back by a fresh book: the totals are on disk, not only in memory.
    many.close()
    assert book(tmp_path / "many.sqlite", "payee").channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]


def test_a_request_on_the_book_already_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "payee.sqlite"
    payee = book(path, "payee")
    payee.owe(CHANNEL, "r2", 40, 0, b"older")
    before = rows(path)
    assert not payee.owe_new(PAYEE_ITEMS)
    assert rows(path) == before
    assert payee.channel(CHANNEL).owed_nano == 40  # type: ignore[union-attr]
    # One by one, the later receipt of r2 adds what it grew by.
    for item in PAYEE_ITEMS:
        payee.owe(*item)
    assert payee.channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]


def test_two_receipts_of_one_request_in_a_batch_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "payee.sqlite"
    payee = book(path, "payee")
    assert not payee.owe_new([(CHANNEL, "r1", 10, 0, b"a"), (CHANNEL, "r1", 20, 1, b"b")])
    assert rows(path) == []
    assert payee.channel(CHANNEL).owed_nano == 0  # type: ignore[union-attr]


def test_a_receipt_kept_by_the_ledger_is_not_copied(tmp_path: Path) -> None:
    path = tmp_path / "proxy.sqlite"
    proxy = book(path, "payee", receipts=lambda _rid, own: own or b"held elsewhere")
    assert proxy.owe_new([(CHANNEL, "r1", 10, 0, None)])
    assert rows(path) == [(CHANNEL, "r1", 10, 0, 0, b"")]


def test_a_channel_of_the_other_side_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "payer.sqlite"
    payer = book(path, "payer")
    assert not payer.owe_new(PAYEE_ITEMS)
    assert rows(path) == []


def test_payer_rows_keep_no_receipt_and_add_to_what_is_owed(tmp_path: Path) -> None:
    one, many = book(tmp_path / "one.sqlite", "payer"), book(tmp_path / "many.sqlite", "payer")
    items = [(CHANNEL, "r1", 100, 0), (CHANNEL, "r2", 50, 0), (OTHER, "r3", 7, 0)]
    for item in items:
        one.incur(*item)
    assert many.incur_new(items)
    assert rows(tmp_path / "many.sqlite") == rows(tmp_path / "one.sqlite")
    assert all(row[5] is None for row in rows(tmp_path / "many.sqlite"))
    assert many.channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]
    # What a voucher then pays is the same.
    assert many.voucher(CHANNEL).voucher.total_nano == 150  # type: ignore[union-attr]


def test_payer_batch_over_the_deposit_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "payer.sqlite"
    payer = book(path, "payer", deposit=100)
    # Each fits; together they do not.
    assert not payer.incur_new([(CHANNEL, "r1", 60, 0), (CHANNEL, "r2", 60, 0)])
    assert rows(path) == []
    assert payer.channel(CHANNEL).owed_nano == 0  # type: ignore[union-attr]


def test_payer_zero_amount_or_known_request_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "payer.sqlite"
    payer = book(path, "payer")
    assert not payer.incur_new([(CHANNEL, "r1", 0, 0)])
    payer.incur(CHANNEL, "r2", 5, 0)
    assert not payer.incur_new([(CHANNEL, "r3", 5, 0), (CHANNEL, "r2", 9, 1)])
    assert rows(path) == [(CHANNEL, "r2", 5, 0, 0, None)]
    assert payer.channel(CHANNEL).owed_nano == 5  # type: ignore[union-attr]


def expected_rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT request_id, channel, request_hash, signers, max_coefficient_milli, peer, auth"
            " FROM pay_expected ORDER BY request_id"
        ).fetchall()
    finally:
        db.close()


def expected_row(
    request_id: str, auth: bytes = b"tag"
) -> tuple[str, str, bytes, bytes, int, str, float, bytes]:
    return (request_id, CHANNEL, b"h" * 32, b"s" * 64, 1500, "client", 1.0, auth)


def test_requests_on_record_are_those_of_one_by_one(tmp_path: Path) -> None:
    one, many = book(tmp_path / "one.sqlite", "payer"), book(tmp_path / "many.sqlite", "payer")
    for rid in ("r1", "r2"):
        assert one.expect(
            rid,
            CHANNEL,
            request_hash=b"h" * 32,
            signers=[b"s" * 32, b"s" * 32],
            max_coefficient_milli=1500,
            peer="client",
            auth=b"tag",
        )
    assert many.expect_new([expected_row("r1"), expected_row("r2")])
    assert expected_rows(tmp_path / "many.sqlite") == expected_rows(tmp_path / "one.sqlite")
    assert many.expected("r2") == one.expected("r2")


def test_a_request_on_record_already_keeps_its_record(tmp_path: Path) -> None:
    path = tmp_path / "proxy.sqlite"
    proxy = book(path, "payer")
    assert proxy.expect_new([expected_row("r1", auth=b"first")])
    # A batch with it writes nothing; alone, it is refused and the first record stays.
    assert not proxy.expect_new([expected_row("r2"), expected_row("r1", auth=b"second")])
    assert not proxy.expect_new([expected_row("r1", auth=b"second")])
    assert [row[0] for row in expected_rows(path)] == ["r1"]
    assert proxy.expected("r1").auth == b"first"  # type: ignore[union-attr]
    # Twice in one batch: nothing; then one by one, the first wins.
    assert not proxy.expect_new([expected_row("r3", b"a"), expected_row("r3", b"b")])
    assert proxy.expected("r3") is None
