"""The book file: small pages for a new one (less log per commit), an old one kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cocoon.payments.book import PaymentBook
from cocoon.payments.store import PAGE_SIZE, open_book


def page_size(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def test_a_new_book_has_small_pages_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "book.sqlite"
    book = PaymentBook(path, network_id=7)
    book.bind("c", side="payee", peer="p", payer_key=b"k" * 32, deposit_nano=10**9)
    book.close()
    assert page_size(path) == PAGE_SIZE == 1024
    db = open_book(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_book_made_with_other_pages_keeps_them_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.close()
    book = PaymentBook(path, network_id=7)
    book.bind("c", side="payee", peer="p", payer_key=b"k" * 32, deposit_nano=10**9)
    assert book.owe("c", "r1", 5_000, 1, b"receipt") == 5_000
    book.close()
    assert page_size(path) == 4096
    again = PaymentBook(path, network_id=7)
    row = again.channel("c")
    assert row is not None and row.owed_nano == 5_000
    again.close()
