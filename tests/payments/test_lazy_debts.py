"""A payer's debts for new requests owed in memory, written to its book later
(payments/lazy_debts.py): what the channel owes is current at once, the rows
written are those of one-by-one `incur`, and a voucher never leaves before the
debts it covers are on disk: written to the rows with it, or, with a journal,
to the journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import cast

import pytest

from cocoon.payments import lazy_debts
from cocoon.payments.book import PaymentBook
from cocoon.payments.channels import signed_voucher
from cocoon.payments.journal_files import read_records
from cocoon.payments.lazy_debts import LazyDebtsBook
from cocoon.payments.link import ChainLink
from cocoon.payments.sides import PayerSide
from cocoon.wire.messages import VoucherMsg

from .test_cadence import CHANNEL, DEPOSIT, KEY, NETWORK, NETWORK_ID, PUB, StubLink

CREDIT = 1_000


def payer_book(path: Path, cls: type[PaymentBook] = LazyDebtsBook) -> PaymentBook:
    book = cls(path, network_id=NETWORK_ID, key=KEY)
    book.bind(CHANNEL, side="payer", peer="payee", payer_key=PUB, deposit_nano=DEPOSIT)
    return book


def rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT channel, request_id, amount_nano, receipt_seq FROM pay_requests ORDER BY 2"
        ).fetchall()
    finally:
        db.close()


def owed(book: PaymentBook) -> int:
    row = book.channel(CHANNEL)
    assert row is not None
    return row.owed_nano


def test_debts_are_owed_in_memory_at_once_and_written_as_one_by_one(tmp_path: Path) -> None:
    lazy = payer_book(tmp_path / "lazy.sqlite")
    plain = payer_book(tmp_path / "plain.sqlite", PaymentBook)
    debts = [(CHANNEL, f"r{i}", 100 + i, 0) for i in range(5)]
    assert lazy.defer_new(debts[:3]) and lazy.defer_new(debts[3:])
    assert owed(lazy) == sum(d[2] for d in debts)
    assert rows(tmp_path / "lazy.sqlite") == []  # in memory only
    for debt in debts:
        plain.incur(*debt)
    with lazy.transaction():  # anything that writes the book sees them written first
        pass
    lazy.commit()
    assert rows(tmp_path / "lazy.sqlite") == rows(tmp_path / "plain.sqlite")
    assert owed(lazy) == owed(plain)
    assert isinstance(lazy, LazyDebtsBook) and lazy.pending == 0 and lazy.folds == 1
    lazy.close()
    plain.close()
    again = payer_book(tmp_path / "lazy.sqlite")
    assert owed(again) == sum(d[2] for d in debts)
    again.close()


def test_what_is_not_new_or_not_covered_goes_one_by_one(tmp_path: Path) -> None:
    book = payer_book(tmp_path / "payer.sqlite")
    assert book.defer_new([(CHANNEL, "r1", 100, 0)])
    # A later receipt of the same request (in memory, then folded), twice in one batch,
    # past the deposit, nothing to owe: refused, nothing owed.
    assert not book.defer_new([(CHANNEL, "r1", 150, 1)])
    assert not book.defer_new([(CHANNEL, "r2", 10, 0), (CHANNEL, "r2", 20, 1)])
    assert not book.defer_new([(CHANNEL, "r3", DEPOSIT, 0)])
    assert not book.defer_new([(CHANNEL, "r4", 0, 0)])
    assert owed(book) == 100
    # One by one, as `incur` does: the later receipt adds what it adds.
    assert book.incur(CHANNEL, "r1", 150, 1) is not None
    assert owed(book) == 150
    assert rows(tmp_path / "payer.sqlite") == [(CHANNEL, "r1", 150, 1)]
    book.close()


def test_a_request_in_the_rows_before_a_restart_is_owed_once(tmp_path: Path) -> None:
    book = payer_book(tmp_path / "payer.sqlite")
    book.incur(CHANNEL, "r1", 100, 0)
    book.close()
    again = payer_book(tmp_path / "payer.sqlite")
    # Not in memory: taken as new, counted in full until the fold finds it.
    assert again.defer_new([(CHANNEL, "r1", 100, 0), (CHANNEL, "r2", 50, 0)])
    assert owed(again) == 250
    assert again.paid_for(CHANNEL, "r2") == 0  # reading the rows folds first
    assert owed(again) == 150
    assert rows(tmp_path / "payer.sqlite") == [(CHANNEL, "r1", 100, 0), (CHANNEL, "r2", 50, 0)]
    again.close()


def test_folds_come_by_themselves_past_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lazy_debts, "FOLD_ROWS", 3)
    book = payer_book(tmp_path / "payer.sqlite")
    for i in range(7):
        assert book.defer_new([(CHANNEL, f"r{i}", 10, 0)])
    book.commit()
    assert len(rows(tmp_path / "payer.sqlite")) == 6
    assert owed(book) == 70
    book.close()


async def test_a_voucher_leaves_with_the_rows_it_covers_on_disk(tmp_path: Path) -> None:
    book = payer_book(tmp_path / "payer.sqlite")
    payer = PayerSide(
        book,
        cast(ChainLink, StubLink(KEY, NETWORK_ID)),
        network=NETWORK,
        close_delay=60,
        deposit_nano=DEPOSIT,
        top_up_below_nano=DEPOSIT // 10,
        voucher_interval_s=3600.0,
    )
    sent: list[tuple[VoucherMsg, list[tuple[object, ...]]]] = []

    def send(message: VoucherMsg) -> None:
        # What another connection to the book file sees as the voucher leaves.
        sent.append((message, rows(tmp_path / "payer.sqlite")))

    payer.attach(CHANNEL, send, max_credit_nano=CREDIT)
    for i in range(12):
        due = payer.owe_new([(CHANNEL, f"r{i}", 120, 0)], lazy=True)
        assert due is not None
        if due[CHANNEL].voucher is not None:
            assert payer.send(CHANNEL, due[CHANNEL].voucher)
    # Due once half the credit (500) is owed: at the 5th and the 10th answer.
    assert [m.total_nano for m, _ in sent] == [600, 1200]
    for message, on_disk in sent:
        assert sum(int(str(r[2])) for r in on_disk) == message.total_nano
        assert signed_voucher(message, NETWORK_ID).voucher.total_nano == message.total_nano
    assert isinstance(book, LazyDebtsBook) and book.pending == 2
    payer.stop()
    book.close()


def test_a_voucher_pays_what_the_rows_say_not_what_memory_counted(tmp_path: Path) -> None:
    """Without a journal, a voucher folds first: a debt taken as new that the rows hold
    already (the client never defers one, client/paying.py) is paid as the rows say."""
    book = payer_book(tmp_path / "payer.sqlite")
    assert book.defer_new([(CHANNEL, "r1", 100, 0)])
    book.close()
    again = payer_book(tmp_path / "payer.sqlite")
    assert again.defer_new([(CHANNEL, "r1", 100, 0), (CHANNEL, "r2", 50, 0)])
    assert owed(again) == 250  # erring high, in memory
    signed = again.voucher(CHANNEL)
    assert signed is not None and signed.voucher.total_nano == 150
    again.close()


def journaled_book(path: Path) -> LazyDebtsBook:
    book = LazyDebtsBook(
        path, network_id=NETWORK_ID, key=KEY, journal=path.with_name("debts.journal")
    )
    book.bind(CHANNEL, side="payer", peer="payee", payer_key=PUB, deposit_nano=DEPOSIT)
    return book


def test_a_voucher_journals_the_debts_it_covers_and_folds_none(tmp_path: Path) -> None:
    """With a journal (the client's), a voucher is signed from memory: the debts held
    are one `write` first, and a kill -9 after it leaves them to the next open."""
    path = tmp_path / "payer.sqlite"
    book = journaled_book(path)
    debts = [(CHANNEL, f"r{i}", 100 + i, 0) for i in range(3)]
    assert book.defer_new(debts)
    signed = book.voucher(CHANNEL)
    book.commit()
    assert signed is not None and signed.voucher.total_nano == 303
    assert book.folds == 0 and rows(path) == []
    journaled = read_records(path.with_name("debts.journal.0"), lazy_debts._decoder)
    assert [debt[:4] for debt in journaled] == debts
    # A debt after the voucher is not in the journal: a kill loses it, as the lazy write
    # did, and the proxy invoices it again.
    assert book.defer_new([(CHANNEL, "r9", 50, 0)])
    # Killed here (never closed): the next open writes the journal's debts, each settled
    # by the voucher (by when it was owed), and owes what was vouchered.
    again = journaled_book(path)
    assert rows(path) == debts
    assert [again.paid_for(CHANNEL, f"r{i}") for i in range(3)] == [100, 101, 102]
    row = again.channel(CHANNEL)
    assert row is not None and row.owed_nano == row.total_nano == 303
    assert again.incur(CHANNEL, "r1", 101, 0) is None  # invoiced again: adds nothing
    assert again.incur(CHANNEL, "r9", 50, 0) is not None  # invoiced: owed now
    assert owed(again) == 353
    again.close()
    assert not list(tmp_path.glob("debts.journal.*"))


def test_a_fold_after_a_voucher_keeps_its_debts_settled(tmp_path: Path) -> None:
    path = tmp_path / "payer.sqlite"
    book = journaled_book(path)
    assert book.defer_new([(CHANNEL, "r1", 100, 0), (CHANNEL, "r2", 50, 0)])
    assert book.voucher(CHANNEL) is not None
    assert book.defer_new([(CHANNEL, "r3", 70, 0)])
    book.fold()
    book.commit()
    assert book.folds == 1 and len(rows(path)) == 3
    # Owed before the voucher: settled; after it: not yet.
    assert [book.paid_for(CHANNEL, r) for r in ("r1", "r2", "r3")] == [100, 50, 0]
    signed = book.voucher(CHANNEL)
    assert signed is not None and signed.voucher.total_nano == 220
    assert book.paid_for(CHANNEL, "r3") == 70
    book.close()
    assert not list(tmp_path.glob("debts.journal.*"))
