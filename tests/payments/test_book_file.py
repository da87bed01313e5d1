"""The book file: 4 KiB pages for a new one (fewer log frames per fold), an old one kept."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cocoon.payments.book import PaymentBook
from cocoon.payments.store import PAGE_SIZE, open_book


def page_size(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def test_a_new_book_has_4_kib_pages_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "book.sqlite"
    book = PaymentBook(path, network_id=7)
    book.bind("c", side="payee", peer="p", payer_key=b"k" * 32, deposit_nano=10**9)
    book.close()
    assert page_size(path) == PAGE_SIZE == 4096
    db = open_book(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_book_made_with_other_pages_keeps_them_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA page_size=1024")  # as books were made before
    old.execute("PRAGMA journal_mode=WAL")
    old.close()
    book = PaymentBook(path, network_id=7)
    book.bind("c", side="payee", peer="p", payer_key=b"k" * 32, deposit_nano=10**9)
    assert book.owe("c", "r1", 5_000, 1, b"receipt") == 5_000
    book.close()
    assert page_size(path) == 1024
    again = PaymentBook(path, network_id=7)
    row = again.channel("c")
    assert row is not None and row.owed_nano == 5_000
    again.close()


OLD_SCHEMA = """
CREATE TABLE pay_channels (
    channel TEXT PRIMARY KEY, side TEXT NOT NULL, peer TEXT NOT NULL,
    payer_key BLOB NOT NULL, deposit_nano INTEGER NOT NULL, seqno INTEGER NOT NULL,
    total_nano INTEGER NOT NULL, signature BLOB, redeemed_nano INTEGER NOT NULL DEFAULT 0,
    owed_nano INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL
);
CREATE TABLE pay_requests (
    channel TEXT NOT NULL, request_id TEXT NOT NULL, amount_nano INTEGER NOT NULL,
    settled_nano INTEGER NOT NULL, receipt_seq INTEGER NOT NULL, receipt BLOB,
    updated_at REAL NOT NULL, PRIMARY KEY (channel, request_id)
);
CREATE INDEX pay_requests_unsettled
    ON pay_requests (channel) WHERE settled_nano < amount_nano;
INSERT INTO pay_channels VALUES ('c', 'payee', 'p', x'00', 1000000, 0, 0, NULL, 0, 300, 1.0);
INSERT INTO pay_requests VALUES ('c', 'paid', 100, 100, 1, x'01', 1.0);
INSERT INTO pay_requests VALUES ('c', 'unpaid', 200, 0, 1, x'02', 2.0);
"""


def test_a_book_settled_row_by_row_keeps_what_it_knew(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.close()
    book = PaymentBook(path, network_id=7)
    # Rows settled one by one stay settled; the index of unsettled rows is gone, and
    # the one of every row that replaced it, for one of invoiceable rows (a payee's).
    assert book.unsettled("c") == [("unpaid", b"\x02")]
    names = {str(r[0]) for r in book._db.execute("SELECT name FROM sqlite_master")}
    assert names.isdisjoint({"pay_requests_unsettled", "pay_requests_recent"})
    assert "pay_requests_invoiceable" in names
    book.settle_all("c")
    assert book.unsettled("c") == []
    book.close()


def test_a_settle_covers_rows_written_before_it_even_if_the_clock_runs_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = PaymentBook(tmp_path / "book.sqlite", network_id=7)
    book.bind("c", side="payee", peer="p", payer_key=b"k" * 32, deposit_nano=10**9)
    book.owe("c", "before", 100, 1, b"r-before")
    book.settle_all("c")
    # The wall clock steps back an hour: a row written now is still after the settle.
    wall = time.time()
    monkeypatch.setattr(time, "time", lambda: wall - 3600)
    book.owe("c", "after", 200, 1, b"r-after")
    assert book.unsettled("c") == [("after", b"r-after")]
    book.close()
