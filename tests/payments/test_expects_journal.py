"""A proxy's requests on record journaled first, folded into its book later
(payments/expects_journal.py): what the book says of them is what it said when
each was a row at once, in memory at once and in the rows after a fold, a
close, or a kill -9."""

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

from cocoon.payments import expects_journal
from cocoon.payments.book import PaymentBook
from cocoon.payments.errors import LedgerError
from cocoon.payments.expects_journal import JournaledExpects
from cocoon.payments.journal_files import record
from cocoon.payments.rows import ExpectedRow

from .journal_faults import a_failing_commit, a_full_disk, kill

NETWORK = 7
CHANNEL = "0:" + "cd" * 32


def open_book(tmp_path: Path) -> JournaledExpects:
    return JournaledExpects(
        tmp_path / "proxy.sqlite", journal=tmp_path / "expected.journal", network_id=NETWORK
    )


def row(request_id: str, auth: bytes = b"tag") -> ExpectedRow:
    return (request_id, CHANNEL, b"h" * 32, b"a" * 32 + b"b" * 32, 1500, "client", 1.0, auth)


def on_record(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [str(r[0]) for r in db.execute("SELECT request_id FROM pay_expected ORDER BY 1")]
    finally:
        db.close()


def test_requests_are_on_record_at_once_and_in_the_rows_after_a_fold(tmp_path: Path) -> None:
    book = open_book(tmp_path)
    plain = PaymentBook(tmp_path / "plain.sqlite", network_id=NETWORK)
    assert book.expect_new([row("r1"), row("r2")])
    assert plain.expect_new([row("r1"), row("r2")])
    assert on_record(tmp_path / "proxy.sqlite") == []  # journaled only
    # Read back as the rows say it: signers split, the tag kept.
    assert book.expected("r2") == plain.expected("r2")
    assert book.expected("r2").signers == (b"a" * 32, b"b" * 32)  # type: ignore[union-attr]
    assert book.invoice("r1", b"receipt") == plain.invoice("r1", b"receipt")
    assert book.expected("r3") is None
    book.fold()
    book.commit()
    assert on_record(tmp_path / "proxy.sqlite") == ["r1", "r2"]
    assert book.expected("r2") == plain.expected("r2")
    assert sorted(tmp_path.glob("expected.journal.*")) == [tmp_path / "expected.journal.1"]
    book.close()
    plain.close()


async def test_a_fold_whose_commit_fails_keeps_its_requests_on_record(
    tmp_path: Path,
) -> None:
    """With a running loop the fold's commit comes at the next turn; when it fails the
    requests are held again and folded with the next fold, whose commit removes the
    failed fold's file: without them back they were on record nowhere."""
    book = open_book(tmp_path)
    assert book.expect_new([row("r1"), row("r2")])
    with a_failing_commit(book):
        book.fold()
        with pytest.raises(LedgerError):
            await book.durable()
    assert book.expected("r1") is not None and on_record(tmp_path / "proxy.sqlite") == []
    assert not book.expect_new([row("r2")])  # still a duplicate
    assert book.expect_new([row("r3")])
    book.fold()
    await book.durable()
    assert on_record(tmp_path / "proxy.sqlite") == ["r1", "r2", "r3"]
    assert len(book._journal.files()) == 1  # the one appended to; the folded ones went
    book.close()


def test_a_request_on_record_already_is_refused_in_memory_or_in_the_rows(
    tmp_path: Path,
) -> None:
    book = open_book(tmp_path)
    assert book.expect_new([row("r1", b"first")])
    # Journaled, not folded: a batch with it writes nothing; alone, it is refused.
    assert not book.expect_new([row("r2"), row("r1", b"second")])
    assert not book.expect_new([row("r1", b"second")])
    assert book.expected("r2") is None
    # Twice in one batch: nothing.
    assert not book.expect_new([row("r3", b"a"), row("r3", b"b")])
    assert book.expected("r3") is None
    book.fold()
    # Folded: found in the rows.
    assert not book.expect_new([row("r4"), row("r1", b"second")])
    assert book.expect_new([row("r4")])
    assert book.expected("r1").auth == b"first"  # type: ignore[union-attr]
    book.close()


def test_a_moved_request_replaces_a_journaled_record(tmp_path: Path) -> None:
    book = open_book(tmp_path)
    assert book.expect_new([row("r1", b"first")])
    assert book.expect(
        "r1",
        CHANNEL,
        request_hash=b"x" * 32,
        signers=[b"c" * 32],
        max_coefficient_milli=1000,
        moved=True,
        auth=b"moved",
    )
    assert book.expected("r1").auth == b"moved"  # type: ignore[union-attr]
    book.close()
    again = open_book(tmp_path)
    assert again.expected("r1").auth == b"moved"  # type: ignore[union-attr]
    again.close()


def test_folds_come_by_themselves_past_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expects_journal, "FOLD_ROWS", 3)
    book = open_book(tmp_path)
    for i in range(7):
        assert book.expect_new([row(f"r{i}")])
    assert book.folds == 2 and book.pending == 1 and book.journaled == 7
    book.commit()
    assert on_record(tmp_path / "proxy.sqlite") == [f"r{i}" for i in range(6)]
    assert not book.expect_new([row("r2")])  # folded: in the rows
    book.close()


def test_what_a_crash_left_is_folded_in_when_the_book_opens(tmp_path: Path) -> None:
    book = open_book(tmp_path)
    assert book.expect_new([row("r1")])
    book.fold()
    book.commit()
    assert book.expect_new([row("r2")])  # in the journal only
    kill(book)
    # As if r1's file had outlived its fold's commit, and a last write were cut short.
    (tmp_path / "expected.journal.0").write_bytes(record(row("r1")))
    with open(tmp_path / "expected.journal.1", "ab") as tail:
        tail.write(b"\x00\x00\x01\x00cut")
    again = open_book(tmp_path)
    assert on_record(tmp_path / "proxy.sqlite") == ["r1", "r2"]  # r1 once
    assert not again.expect_new([row("r2")])
    assert sorted(tmp_path.glob("expected.journal.*")) == [tmp_path / "expected.journal.0"]
    again.close()


def test_a_failed_write_puts_nothing_on_record_and_what_follows_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = open_book(tmp_path)
    with a_full_disk(monkeypatch):
        book.expect_new([row("r1")])
    assert book.expected("r1") is None
    assert book.expect_new([row("r2")])
    kill(book)
    again = open_book(tmp_path)
    # The torn record ended its own file only: r2, written after it, is on record.
    assert on_record(tmp_path / "proxy.sqlite") == ["r2"]
    again.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cocoon.payments.expects_journal import JournaledExpects

    root, channel = Path(sys.argv[1]), sys.argv[2]
    book = JournaledExpects(root / "proxy.sqlite", journal=root / "expected.journal",
                            network_id=7)
    i = 0
    while True:
        batch = [(f"r{i + j:08d}", channel, b"h" * 32, b"s" * 32, 1000, "c", 1.0, b"t")
                 for j in range(5)]
        assert book.expect_new(batch)
        # On record: the requests may leave now.
        sys.stdout.write(f"{i + 4}\\n")
        sys.stdout.flush()
        i += 5
        if i % 50 == 0:
            book.fold()
    """
)


def test_kill_9_loses_no_request_that_left(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), CHANNEL],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "4"
    time.sleep(0.5)  # a moment in the loop (fault injection), not a wait for a result
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    left = int([line for line in child.stdout.read().splitlines() if line][-1])
    book = open_book(tmp_path)
    found = on_record(tmp_path / "proxy.sqlite")
    expected = [f"r{i:08d}" for i in range(left + 1)]
    assert found[: len(expected)] == expected
    assert 0 <= len(found) - len(expected) <= 5  # the batch written, not yet told
    book.close()
