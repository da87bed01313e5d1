"""A proxy's new bills journaled first, folded into its ledger and book later
(payments/bill_journal.py): the charge, the client's debt and the worker's share of
each bill owed in memory at once, in the rows after a fold, a close or a kill -9, and
never half of a bill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cocoon.payments.bill_journal import ProxyBook, _decoder
from cocoon.payments.errors import LedgerError
from cocoon.payments.journal_files import read_records, record
from cocoon.payments.vouchers import Voucher, sign_voucher

from .journal_faults import a_failing_commit, kill
from .proxy_books import CLIENT, CLIENT_KEY, DEPOSIT, NETWORK, WORKER, bill, open_book


def books(path: Path) -> dict[str, object]:
    """What the files say: charges, each channel's requests, and its total owed."""
    db = sqlite3.connect(path)
    try:
        return {
            "charges": dict(db.execute("SELECT request_id, amount_nano FROM charges")),
            "client": dict(
                db.execute(
                    "SELECT request_id, amount_nano FROM pay_requests WHERE channel = ?", (CLIENT,)
                )
            ),
            "worker": dict(
                db.execute(
                    "SELECT request_id, amount_nano FROM pay_requests WHERE channel = ?", (WORKER,)
                )
            ),
            "owed": dict(db.execute("SELECT channel, owed_nano FROM pay_channels")),
        }
    finally:
        db.close()


def owed(book: ProxyBook) -> tuple[int, int]:
    client, worker = book.channel(CLIENT), book.channel(WORKER)
    assert client is not None and worker is not None
    return client.owed_nano, worker.owed_nano


def test_a_bill_is_owed_in_memory_at_once_and_in_both_books_after_a_fold(tmp_path: Path) -> None:
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100), bill("r2", 50)])
    # In the journal, durable; the ledger's reads of one request see it; owed at once.
    journaled = [
        e[0][0] for f in sorted(tmp_path.glob("bills.journal.*")) for e in read_records(f, _decoder)
    ]
    assert journaled == ["r1", "r2"]
    assert ledger.billed("r1") and ledger.receipt("r2") == b"Rr2"
    assert not ledger.billed("r3")
    assert owed(book) == (150, 135)
    assert books(tmp_path / "ledger.sqlite")["charges"] == {}
    # A read of the rows as a whole folds them in first.
    assert ledger.totals().amount_nano == 150
    assert books(tmp_path / "ledger.sqlite") == {
        "charges": {"r1": 100, "r2": 50},
        "client": {"r1": 100, "r2": 50},
        "worker": {"r1": 90, "r2": 45},
        "owed": {CLIENT: 150, WORKER: 135},
    }
    assert owed(book) == (150, 135)
    assert book.bills_status() == {"journaled": 2, "pending": 0, "folds": 1, "slices": 0}
    assert all(f.stat().st_size == 0 for f in tmp_path.glob("bills.journal.*"))
    book.close()
    ledger.close()


def test_what_the_journal_cannot_take_is_refused_whole(tmp_path: Path) -> None:
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100)])
    # Held already, twice in one turn, a worker's deposit that cannot cover its share,
    # a channel the book does not have: nothing of the turn is written.
    too_much = bill("r4", 2 * DEPOSIT)
    unknown = (bill("r5", 1)[0], "0:" + "ee" * 32, 1, WORKER, 1)
    for entries in (
        [bill("r1", 100)],
        [bill("r2", 1), bill("r2", 1)],
        [bill("r3", 1), too_much],
        [unknown],
    ):
        assert not book.bill_new(entries)
    assert book.bills_status()["journaled"] == 1
    assert owed(book) == (100, 90)
    book.close()
    ledger.close()


def test_a_kill_before_the_fold_loses_nothing_and_a_second_recovery_adds_nothing(
    tmp_path: Path,
) -> None:
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100)])
    book.fold()
    book.commit()
    assert book.bill_new([bill("r2", 50), bill("r3", 7)])
    kept = [f.read_bytes() for f in sorted(tmp_path.glob("bills.journal.*"))]
    kill(book)
    book._bills.close()
    ledger, again = open_book(tmp_path)
    after = books(tmp_path / "ledger.sqlite")
    assert after == {
        "charges": {"r1": 100, "r2": 50, "r3": 7},
        "client": {"r1": 100, "r2": 50, "r3": 7},
        "worker": {"r1": 90, "r2": 45, "r3": 6},
        "owed": {CLIENT: 157, WORKER: 141},
    }
    again.close()
    ledger.close()
    # The same journal found again (a crash between a fold's commit and its file's
    # removal): folded twice, the books are as before.
    for number, data in enumerate(kept):
        (tmp_path / f"bills.journal.{number}").write_bytes(data)
    ledger, third = open_book(tmp_path)
    assert books(tmp_path / "ledger.sqlite") == after
    third.close()
    ledger.close()


def test_a_voucher_accepted_settles_the_bills_held_in_memory(tmp_path: Path) -> None:
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100), bill("r2", 50)])
    signed = sign_voucher(CLIENT_KEY, Voucher(CLIENT, 1, 150), NETWORK)
    assert book.accept(signed) == 150
    # It covers all owed, the held bills too: nothing is left to invoice.
    assert book.unsettled(CLIENT) == []
    book.close()
    ledger.close()


def test_a_voucher_to_the_worker_pays_the_bills_held_without_folding_them(
    tmp_path: Path,
) -> None:
    """Signed from what memory owes, it settles the bills billed before it by their time:
    folded later, they are paid; one billed after it is not."""
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100), bill("r2", 50)])
    signed = book.voucher(WORKER)
    assert signed is not None and signed.voucher.total_nano == 135
    # Nor does the settle tick's read of every channel: memory holds them current.
    owing = {row.channel: row.owed_nano for row in book.channels()}
    assert owing == {CLIENT: 150, WORKER: 135}
    assert book.bills_status()["pending"] == 2
    assert book.bill_new([bill("r3", 10)])
    assert [book.paid_for(WORKER, r) for r in ("r1", "r2", "r3")] == [90, 45, 0]
    assert book.voucher(WORKER) is not None
    assert book.paid_for(WORKER, "r3") == 9
    book.close()
    ledger.close()


def test_a_kill_between_a_voucher_and_its_fold_owes_each_bill_once(tmp_path: Path) -> None:
    """The rows owe less than the voucher until the journal is folded in at the next open;
    nothing there may take the voucher for a debt (rows.py, `BOOK_VERSION`)."""
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100), bill("r2", 50)])
    assert book.voucher(WORKER) is not None
    book.commit()
    kill(book)
    book._bills.close()
    ledger, again = open_book(tmp_path)
    assert books(tmp_path / "ledger.sqlite")["owed"] == {CLIENT: 150, WORKER: 135}
    worker = again.channel(WORKER)
    assert worker is not None and (worker.owed_nano, worker.total_nano) == (135, 135)
    assert [again.paid_for(WORKER, r) for r in ("r1", "r2")] == [90, 45]
    assert again.voucher(WORKER) is None
    again.close()
    ledger.close()


def test_bills_journaled_before_they_kept_their_time_are_folded_in(tmp_path: Path) -> None:
    ledger, book = open_book(tmp_path)
    kill(book)
    book._bills.close()
    (tmp_path / "bills.journal.0").write_bytes(record(bill("r1", 100)))
    ledger, again = open_book(tmp_path)
    assert books(tmp_path / "ledger.sqlite")["worker"] == {"r1": 90}
    assert owed(again) == (100, 90)
    again.close()
    ledger.close()


async def test_a_fold_whose_commit_fails_holds_its_bills_again(tmp_path: Path) -> None:
    ledger, book = open_book(tmp_path)
    await book.durable()  # the channels bound
    assert book.bill_new([bill("r1", 100)])
    with a_failing_commit(book):
        book.fold()
        with pytest.raises(LedgerError):
            await book.durable()
    assert ledger.billed("r1") and books(tmp_path / "ledger.sqlite")["charges"] == {}
    assert not book.bill_new([bill("r1", 100)])  # held again, not lost
    assert book.bill_new([bill("r2", 50)])
    book.fold()
    await book.durable()
    assert books(tmp_path / "ledger.sqlite")["charges"] == {"r1": 100, "r2": 50}
    assert owed(book) == (150, 135)
    book.close()
    ledger.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from proxy_books import WORKER, bill, open_book

    root = Path(sys.argv[1])
    ledger, book = open_book(root)
    i = int(sys.argv[3])
    vouchers = sys.argv[4] == "vouchers"
    while True:
        assert book.bill_new([bill(f"r{i + j:08d}", 10 + (i + j) % 97) for j in range(5)])
        # Billed: the receipts may leave now.
        sys.stdout.write(f"{i + 4}\\n")
        sys.stdout.flush()
        i += 5
        if vouchers and i % 15 == 0:
            book.voucher(WORKER)  # from memory: the bills stay held
            book.commit()
        if i % 45 == 0:
            book.fold()
            book.commit()
    """
)


@pytest.mark.parametrize("vouchers", ["no-vouchers", "vouchers"])
def test_kill_9_at_random_moments_keeps_every_bill_whole(tmp_path: Path, vouchers: str) -> None:
    """A writer billing and folding (and paying the worker, from memory) is killed at
    random moments: every bill it said was billed is in all three places once reopened,
    the books agree to the nanoton, and no voucher pays more than the rows owe."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    last = -1
    for round_ in range(4):
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(tmp_path),
                str(Path(__file__).parent),
                str(last + 1),
                vouchers,
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert writer.stdout is not None
        # Some bills, then the kill: at a different point of the loop each round.
        for _ in range(40 + 37 * round_):
            line = writer.stdout.readline()
            assert line, "the writer stopped"
        writer.send_signal(signal.SIGKILL)
        said = int(line)
        writer.wait()
        ledger, book = open_book(tmp_path)
        found = books(tmp_path / "ledger.sqlite")
        charges = found["charges"]
        assert isinstance(charges, dict)
        assert all(f"r{n:08d}" in charges for n in range(last + 1, said + 1))
        assert charges == found["client"]
        worker = found["worker"]
        assert isinstance(worker, dict) and worker.keys() == charges.keys()
        assert found["owed"] == {CLIENT: sum(charges.values()), WORKER: sum(worker.values())}
        paid = book.channel(WORKER)
        assert paid is not None and paid.total_nano <= paid.owed_nano
        book.close()
        ledger.close()
        last = said
    assert last > 0


def test_a_receipt_billed_again_while_its_bill_is_held_is_not_owed_twice(tmp_path: Path) -> None:
    """A worker's invoice for a request whose bill is still in the journal (a lost
    voucher): owing its share again, one by one, folds the journal first and adds
    nothing."""
    ledger, book = open_book(tmp_path)
    assert book.bill_new([bill("r1", 100)])
    assert book.incur(WORKER, "r1", 90, 0) is None  # the same receipt: nothing more
    assert book.owe(CLIENT, "r1", 100, 0) == 0
    assert owed(book) == (100, 90)
    assert books(tmp_path / "ledger.sqlite")["owed"] == {CLIENT: 100, WORKER: 90}
    # A later receipt of the request (a stream's final one) adds what it adds.
    assert book.incur(WORKER, "r1", 135, 1) is not None
    assert owed(book) == (100, 135)
    book.close()
    ledger.close()
