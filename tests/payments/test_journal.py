"""A payee's new receipts journaled first, folded into its book later
(payments/journal.py): what the book says is the same as if each were written at
once, in memory at once and on disk after a fold, a close, or a kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments import journal
from cocoon.payments.book import PaymentBook
from cocoon.payments.errors import LedgerError
from cocoon.payments.journal import JournaledBook, _decoder
from cocoon.payments.journal_files import read_records, record
from cocoon.payments.vouchers import SignedVoucher, Voucher, sign_voucher

from .journal_faults import a_failing_commit, a_full_disk, kill

NETWORK = 7
CHANNEL = "0:" + "ab" * 32
PAYER = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
PUB = PAYER.public_key().public_bytes_raw()


def open_book(tmp_path: Path) -> JournaledBook:
    book = JournaledBook(
        tmp_path / "payee.sqlite", journal=tmp_path / "receipts.journal", network_id=NETWORK
    )
    book.bind(CHANNEL, side="payee", peer="proxy", payer_key=PUB, deposit_nano=10**12)
    return book


def rows(path: Path) -> dict[str, tuple[int, int, bytes]]:
    db = sqlite3.connect(path)
    try:
        return {
            str(r[0]): (int(r[1]), int(r[2]), bytes(r[3]))
            for r in db.execute(
                "SELECT request_id, amount_nano, receipt_seq, receipt FROM pay_requests"
            )
        }
    finally:
        db.close()


def journal_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("receipts.journal.*"))


def voucher(total: int, seqno: int) -> SignedVoucher:
    return sign_voucher(PAYER, Voucher(CHANNEL, seqno, total), NETWORK)


def test_new_receipts_are_owed_in_memory_at_once_and_in_the_rows_after_a_fold(
    tmp_path: Path,
) -> None:
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1"), (CHANNEL, "r2", 50, 0, b"k2")])
    # In the journal, durable; owed at once; not yet in the rows.
    assert [e[1] for f in journal_files(tmp_path) for e in read_records(f, _decoder)] == [
        "r1",
        "r2",
    ]
    assert book.channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]
    assert rows(tmp_path / "payee.sqlite") == {}
    book.fold()
    assert rows(tmp_path / "payee.sqlite") == {"r1": (100, 0, b"k1"), "r2": (50, 0, b"k2")}
    assert book.channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]
    # The folded journal is gone once its fold is committed (no loop: at once).
    assert all(f.stat().st_size == 0 for f in journal_files(tmp_path))
    book.close()
    book.close()  # closing twice (a role's stop and its harness) is one close
    assert journal_files(tmp_path) == []
    again = PaymentBook(tmp_path / "payee.sqlite", network_id=NETWORK)
    assert again.channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]
    again.close()


def test_a_streams_later_receipts_are_journaled_by_what_they_add(tmp_path: Path) -> None:
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1")])
    assert book.owe_new([(CHANNEL, "r1", 160, 1, b"k1b"), (CHANNEL, "r2", 5, 0, b"k2")])
    assert book.channel(CHANNEL).owed_nano == 165  # type: ignore[union-attr]
    # An older receipt adds nothing; of two in one batch, the later counts.
    assert book.owe_new([(CHANNEL, "r1", 120, 0, b"k1-old")])
    assert book.owe_new([(CHANNEL, "r3", 1, 0, b"k3"), (CHANNEL, "r3", 2, 1, b"k3b")])
    assert book.channel(CHANNEL).owed_nano == 167  # type: ignore[union-attr]
    book.fold()
    assert rows(tmp_path / "payee.sqlite") == {
        "r1": (160, 1, b"k1b"),
        "r2": (5, 0, b"k2"),
        "r3": (2, 1, b"k3b"),
    }
    # A stream in flight across a fold: its next receipt still adds only the difference.
    assert book.owe_new([(CHANNEL, "r1", 200, 2, b"k1c")])
    assert book.channel(CHANNEL).owed_nano == 207  # type: ignore[union-attr]
    # What `owe` would refuse is not journaled: the caller owes it, and hears why.
    assert not book.owe_new([(CHANNEL, "r4", -1, 0, b"k4")])
    book.close()
    assert rows(tmp_path / "payee.sqlite")["r1"] == (200, 2, b"k1c")
    again = PaymentBook(tmp_path / "payee.sqlite", network_id=NETWORK)
    assert again.channel(CHANNEL).owed_nano == 207  # type: ignore[union-attr]
    again.close()


def test_a_request_served_again_after_a_restart_is_owed_as_one_by_one_once_folded(
    tmp_path: Path,
) -> None:
    """Not read for at once (a read per receipt costs what the journal saves): memory
    errs high until the fold, which owes it as `owe` does."""
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1")])
    book.close()
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 130, 5, b"k1b"), (CHANNEL, "r2", 10, 0, b"k2")])
    assert book.channel(CHANNEL).owed_nano == 240  # type: ignore[union-attr]
    book.fold()
    assert book.channel(CHANNEL).owed_nano == 140  # type: ignore[union-attr]
    assert rows(tmp_path / "payee.sqlite") == {"r1": (130, 5, b"k1b"), "r2": (10, 0, b"k2")}
    book.close()


def test_a_voucher_settles_the_journaled_receipts_it_covers(tmp_path: Path) -> None:
    """A voucher covering all that is owed settles every request owed before it, those
    still in the journal too, by the time each was owed: it folds nothing, and none
    escapes (or is invoiced again) once folded."""
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1"), (CHANNEL, "r2", 50, 0, b"k2")])
    assert book.accept(voucher(150, 1), "r2") == 150  # names a request; pays all
    assert (book.folds, book.pending) == (0, 2)
    assert book.unsettled(CHANNEL) == []  # folds them first
    assert book.owe_new([(CHANNEL, "r3", 30, 0, b"k3")])
    assert book.unsettled(CHANNEL) == [("r3", b"k3")]
    row = book.channel(CHANNEL)
    assert row is not None and row.owed_nano == 180 and row.unpaid_nano == 30
    book.close()


def test_a_voucher_for_part_of_what_is_owed_folds_the_request_it_names(tmp_path: Path) -> None:
    """Paying less than all, a voucher is put on the request it names, whose row must be
    written first; the rest stays to invoice."""
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1"), (CHANNEL, "r2", 50, 0, b"k2")])
    assert book.accept(voucher(100, 1), "r1") == 100
    assert book.pending == 0
    assert book.unsettled(CHANNEL) == [("r2", b"k2")]
    book.close()


def test_a_voucher_accepted_before_a_kill_settles_what_the_journal_held(tmp_path: Path) -> None:
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1")])
    assert book.accept(voucher(100, 1)) == 100
    book.commit()
    assert book.owe_new([(CHANNEL, "r2", 50, 0, b"k2")])
    kill(book)
    again = open_book(tmp_path)
    row = again.channel(CHANNEL)
    assert row is not None and (row.owed_nano, row.total_nano) == (150, 100)
    assert again.unsettled(CHANNEL) == [("r2", b"k2")]
    again.close()


def test_folds_come_by_themselves_past_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "FOLD_ROWS", 3)
    book = open_book(tmp_path)
    for i in range(7):
        assert book.owe_new([(CHANNEL, f"r{i}", 1, 0, b"k")])
    assert len(rows(tmp_path / "payee.sqlite")) == 6  # two folds of three
    assert book.channel(CHANNEL).owed_nano == 7  # type: ignore[union-attr]
    book.close()


def test_what_a_crash_left_in_the_journal_is_folded_in_when_the_book_opens(
    tmp_path: Path,
) -> None:
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1")])
    book.fold()  # r1 in the rows, its journal file removed
    assert book.owe_new([(CHANNEL, "r2", 50, 0, b"k2")])  # r2 in the journal only
    kill(book)
    # As if r1's file had outlived its fold's commit, and a last write were cut short.
    (tmp_path / "receipts.journal.0").write_bytes(record((CHANNEL, "r1", 100, 0, b"k1")))
    with open(tmp_path / "receipts.journal.1", "ab") as tail:
        tail.write(b"\x00\x00\x01\x00cut")
    again = open_book(tmp_path)
    assert rows(tmp_path / "payee.sqlite") == {"r1": (100, 0, b"k1"), "r2": (50, 0, b"k2")}
    # r1 was in the rows and in the journal: owed once.
    assert again.channel(CHANNEL).owed_nano == 150  # type: ignore[union-attr]
    assert journal_files(tmp_path) == [tmp_path / "receipts.journal.0"]  # a new, empty one
    assert read_records(tmp_path / "receipts.journal.0", _decoder) == []
    again.close()


def test_a_failed_write_owes_nothing_and_what_follows_goes_to_a_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = open_book(tmp_path)
    with a_full_disk(monkeypatch):
        book.owe_new([(CHANNEL, "r1", 100, 0, b"k1")])
    assert book.channel(CHANNEL).owed_nano == 0  # type: ignore[union-attr]
    assert book.owe_new([(CHANNEL, "r2", 50, 0, b"k2")])
    kill(book)  # before any fold
    again = open_book(tmp_path)
    # The torn record ended its own file only: r2, acknowledged after it, is kept.
    assert rows(tmp_path / "payee.sqlite") == {"r2": (50, 0, b"k2")}
    assert again.channel(CHANNEL).owed_nano == 50  # type: ignore[union-attr]
    again.close()


def test_a_fold_whose_commit_fails_loses_no_receipt(tmp_path: Path) -> None:
    """Its receipts are held again and folded by the next fold, whose commit removes
    the failed fold's file too: without them back, they were in no row, nowhere in
    memory, and gone with that file."""
    book = open_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1"), (CHANNEL, "r2", 50, 0, b"k2")])
    with a_failing_commit(book), pytest.raises(LedgerError):
        book.fold()
    assert book.pending == 2 and rows(tmp_path / "payee.sqlite") == {}
    assert book.owe_new([(CHANNEL, "r3", 25, 0, b"k3")])
    book.fold()
    assert rows(tmp_path / "payee.sqlite") == {
        "r1": (100, 0, b"k1"),
        "r2": (50, 0, b"k2"),
        "r3": (25, 0, b"k3"),
    }
    assert book.channel(CHANNEL).owed_nano == 175  # type: ignore[union-attr]
    assert len(journal_files(tmp_path)) == 1  # the one appended to; the folded ones went
    book.close()


async def test_a_turns_fold_whose_commit_fails_loses_no_receipt(tmp_path: Path) -> None:
    """The same with a running loop, where the fold's commit comes at the next turn
    (and a stream's later receipt came in between)."""
    book = open_book(tmp_path)
    await book.durable()  # the channel's row
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1"), (CHANNEL, "r2", 50, 0, b"k2")])
    with a_failing_commit(book):
        book.fold()
        assert book.owe_new([(CHANNEL, "r2", 80, 1, b"k2b")])  # r2's next receipt
        with pytest.raises(LedgerError):
            await book.durable()  # the commit fails: what waited for it is told
    assert rows(tmp_path / "payee.sqlite") == {}
    book.fold()
    await book.durable()
    assert rows(tmp_path / "payee.sqlite") == {"r1": (100, 0, b"k1"), "r2": (80, 1, b"k2b")}
    assert book.channel(CHANNEL).owed_nano == 180  # type: ignore[union-attr]
    book.close()
    again = open_book(tmp_path)  # nothing left to recover, nothing owed twice
    assert again.channel(CHANNEL).owed_nano == 180  # type: ignore[union-attr]
    again.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cocoon.payments.journal import JournaledBook

    root, channel, payer = Path(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])
    book = JournaledBook(root / "payee.sqlite", journal=root / "receipts.journal",
                         network_id=7)
    book.bind(channel, side="payee", peer="proxy", payer_key=payer, deposit_nano=10**15)
    i = 0
    while True:
        batch = [(channel, f"r{i + j:08d}", 1000 + i + j, 0, b"kept") for j in range(5)]
        assert book.owe_new(batch)
        # Acknowledged: the receipts may leave now.
        sys.stdout.write(f"{i + 4}\\n")
        sys.stdout.flush()
        i += 5
        if i % 50 == 0:
            book.fold()
    """
)


@pytest.mark.parametrize("after_s", [0.3, 0.7])
def test_kill_9_loses_no_receipt_that_was_acknowledged(tmp_path: Path, after_s: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), CHANNEL, PUB.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first.strip() == "4"
    time.sleep(after_s)  # a moment in the loop (fault injection), not a wait for a result
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    acknowledged = int([line for line in child.stdout.read().splitlines() if line][-1])
    book = open_book(tmp_path)
    found = rows(tmp_path / "payee.sqlite")
    # Every acknowledged receipt is owed, once; nothing else but the batch in flight.
    expected = {f"r{i:08d}": 1000 + i for i in range(acknowledged + 1)}
    assert {rid: amount for rid, (amount, _, _) in found.items() if rid in expected} == expected
    assert 0 <= len(found) - len(expected) <= 5  # the batch written, not yet acknowledged
    assert book.channel(CHANNEL).owed_nano == sum(a for a, _, _ in found.values())  # type: ignore[union-attr]
    book.close()
