"""A fold written a slice a turn of the event loop (payments/slices.py): the books past
their bound write what they hold over several turns, answer from memory for it all
the while, fold whole whatever reads their rows, and lose nothing to a kill -9 or a
failed commit in between."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cocoon.payments import bill_journal, expects_journal, journal, lazy_debts, slices
from cocoon.payments.errors import LedgerError
from cocoon.payments.rows import ExpectedRow
from cocoon.payments.slices import FoldSlices

from .journal_faults import a_failing_commit, kill
from .proxy_books import CLIENT, WORKER, bill
from .proxy_books import open_book as open_proxy_book
from .test_bill_journal import books, owed
from .test_journal import CHANNEL, journal_files, rows
from .test_journal import open_book as open_receipts_book
from .test_journal_model import debts_book

BOUND = 40


@pytest.fixture(autouse=True)
def small_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds and slices small enough for a test: a fold of `BOUND` rows takes several
    slices of 8 rows, one chunk each (the time allowed is none), one a turn."""
    for module in (journal, bill_journal, lazy_debts, expects_journal):
        monkeypatch.setattr(module, "FOLD_ROWS", BOUND)
    monkeypatch.setattr(slices, "CHUNK", 8)
    for name in ("SLICE_S", "GAP_S", "ALONE_SLICE_S", "ALONE_GAP_S"):
        monkeypatch.setattr(slices, name, 0.0)


def written_rows(db: sqlite3.Connection, table: str) -> int:
    """Rows in `table` as the book's own connection sees them (its slices' transactions
    are lazy: other connections see them once a commit comes)."""
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def turns(until: Callable[[], bool], most: int = 100) -> int:
    """Turn the loop until `until()` holds; how many turns that took."""
    for turn in range(most):
        if until():
            return turn
        await asyncio.sleep(0)
    raise AssertionError(f"not done in {most} turns")


# -- the slices alone ------------------------------------------------------------------


def manual() -> tuple[FoldSlices[int, str], list[list[str]], list[Callable[[], None]]]:
    written: list[list[str]] = []
    pieces: FoldSlices[int, str] = FoldSlices(written.append, chunk=2)
    queue: list[Callable[[], None]] = []
    pieces.schedule = queue.append
    return pieces, written, queue


def test_a_fold_is_written_a_chunk_a_step_oldest_first_then_done_once() -> None:
    pieces, written, queue = manual()
    done: list[bool] = []
    assert pieces.start({i: f"e{i}" for i in range(5)}, lambda: done.append(True))
    assert pieces.active and written == [] and len(queue) == 1
    while queue:
        queue.pop(0)()
    assert written == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert done == [True] and not pieces.active and pieces.held == {}
    assert pieces.slices == 3


def test_what_a_whole_fold_takes_is_not_written_again_and_ends_the_slices() -> None:
    pieces, written, queue = manual()
    done: list[bool] = []
    pieces.start({i: f"e{i}" for i in range(5)}, lambda: done.append(True))
    queue.pop(0)()
    assert pieces.take() == {2: "e2", 3: "e3", 4: "e4"}
    for step in queue:
        step()
    assert written == [["e0", "e1"]] and done == [] and not pieces.active


def test_a_slice_that_fails_unexpectedly_stays_held_for_the_next_whole_fold() -> None:
    def fail(chunk: list[str]) -> None:
        raise RuntimeError("a bug")

    pieces: FoldSlices[int, str] = FoldSlices(fail, chunk=2)
    queue: list[Callable[[], None]] = []
    pieces.schedule = queue.append
    pieces.start({i: f"e{i}" for i in range(3)}, lambda: None)
    queue.pop(0)()
    # Held still, oldest first, and no more slices are tried: a whole fold takes them.
    assert queue == [] and pieces.active
    assert pieces.take() == {0: "e0", 1: "e1", 2: "e2"}


def test_a_fold_past_the_bound_begins_in_slices_or_waits_or_is_whole() -> None:
    pieces, _, _ = manual()
    wholes: list[int] = []
    assert pieces.begin(10, 10, lambda: wholes.append(1))
    pieces.start({1: "e1"}, lambda: None)
    # Slices under way: the next fold waits for them, up to twice the bound.
    assert not pieces.begin(19, 10, lambda: wholes.append(19)) and wholes == []
    assert not pieces.begin(20, 10, lambda: wholes.append(20)) and wholes == [20]
    alone: FoldSlices[int, str] = FoldSlices(lambda chunk: None)  # no loop: whole
    assert not alone.begin(10, 10, lambda: wholes.append(10)) and wholes == [20, 10]


@pytest.mark.parametrize("at_once", [1, 8])
def test_each_slice_is_sized_to_take_the_time_allowed(
    monkeypatch: pytest.MonkeyPatch, at_once: int
) -> None:
    """As many rows as the slice before wrote in the time allowed: here 0.1 ms of CPU a
    row, and 1 ms where requests come in batches, 0.4 ms where they come one at a time."""
    monkeypatch.setattr(slices, "SLICE_S", 0.001)
    monkeypatch.setattr(slices, "ALONE_SLICE_S", 0.0004)

    def write(chunk: list[str]) -> None:
        until = time.thread_time() + 0.0001 * len(chunk)
        while time.thread_time() < until:
            pass

    pieces: FoldSlices[int, str] = FoldSlices(write)
    for _ in range(100):
        pieces.arrived(at_once)
    assert pieces.alone == (at_once == 1)
    queue: list[Callable[[], None]] = []
    pieces.schedule = queue.append
    pieces.start({i: f"e{i}" for i in range(100)}, lambda: None)
    assert pieces.size == 8  # the first: `CHUNK`
    queue.pop(0)()
    rows = (8, 10) if at_once > 1 else (3, 4)
    assert rows[0] <= pieces.size <= rows[1] and len(pieces.held) == 92


def test_requests_that_come_in_batches_make_slices_longer_and_further_apart() -> None:
    pieces: FoldSlices[int, str] = FoldSlices(lambda chunk: None)
    assert pieces.alone and pieces.gap() == slices.ALONE_GAP_S
    for _ in range(20):
        pieces.arrived(6)  # a busy proxy's bills of one turn
    assert not pieces.alone and pieces.gap() == slices.GAP_S
    for _ in range(60):
        pieces.arrived(1)
    assert pieces.alone


def test_without_a_loop_nothing_is_sliced() -> None:
    pieces: FoldSlices[int, str] = FoldSlices(lambda chunk: None)
    assert not pieces.ready()
    assert not pieces.start({1: "e1"}, lambda: None)
    assert pieces.held == {} and not pieces.active


# -- a proxy's bills -------------------------------------------------------------------


async def test_bills_past_the_bound_are_written_over_turns_and_owed_all_the_while(
    tmp_path: Path,
) -> None:
    ledger, book = open_proxy_book(tmp_path)
    entries = [bill(f"r{i:03d}", 10 + i) for i in range(BOUND)]
    for entry in entries:
        assert book.bill_new([entry])
    client = sum(entry[2] for entry in entries)
    worker = sum(entry[4] for entry in entries)
    # Past the bound: set aside, nothing written in this turn, all owed in memory.
    assert book.bills_status()["folds"] == 1
    assert books(tmp_path / "ledger.sqlite")["charges"] == {}
    assert owed(book) == (client, worker)
    seen: list[int] = []

    def written() -> bool:
        assert owed(book) == (client, worker)  # memory stays right between slices
        assert ledger.billed("r000") and ledger.receipt(f"r{BOUND - 1:03d}") is not None
        seen.append(written_rows(ledger.db, "charges"))
        return book.bills_status()["pending"] == 0

    assert await turns(written) >= BOUND // 8
    assert len(set(seen)) > 2  # the rows grew slice by slice, not at once
    await turns(lambda: len(list(tmp_path.glob("bills.journal.*"))) == 1)
    assert books(tmp_path / "ledger.sqlite") == {
        "charges": {e[0][0]: e[2] for e in entries},
        "client": {e[0][0]: e[2] for e in entries},
        "worker": {e[0][0]: e[4] for e in entries},
        "owed": {CLIENT: client, WORKER: worker},
    }
    assert owed(book) == (client, worker)
    book.close()
    ledger.close()


async def test_a_channel_out_of_memory_while_slices_are_written_is_owed_all_it_holds(
    tmp_path: Path,
) -> None:
    ledger, book = open_proxy_book(tmp_path)
    for i in range(BOUND):
        assert book.bill_new([bill(f"r{i:03d}", 10)])
    await turns(lambda: book._slices.slices >= 1)
    del book._rows[WORKER]  # as a write that reads it again leaves it
    await turns(lambda: book._slices.slices >= 2)  # a slice reads it from the rows
    # Read again, it folds what is held first: all the bills, once.
    assert owed(book) == (10 * BOUND, 9 * BOUND)
    assert book.bills_status()["pending"] == 0
    book.close()
    assert books(tmp_path / "ledger.sqlite")["owed"] == {CLIENT: 10 * BOUND, WORKER: 9 * BOUND}
    ledger.close()


async def test_a_read_of_the_rows_while_slices_are_written_folds_them_all(
    tmp_path: Path,
) -> None:
    ledger, book = open_proxy_book(tmp_path)
    for i in range(BOUND + 3):
        assert book.bill_new([bill(f"r{i:03d}", 10)])
    await turns(lambda: written_rows(ledger.db, "charges") > 0)
    assert written_rows(ledger.db, "charges") < BOUND
    assert ledger.totals().amount_nano == 10 * (BOUND + 3)
    assert book.bills_status()["pending"] == 0
    assert owed(book) == (10 * (BOUND + 3), 9 * (BOUND + 3))
    await turns(lambda: len(list(tmp_path.glob("bills.journal.*"))) == 1)
    book.close()
    ledger.close()


async def test_a_proxy_killed_between_slices_bills_each_request_once(tmp_path: Path) -> None:
    ledger, book = open_proxy_book(tmp_path)
    for i in range(BOUND + 5):
        assert book.bill_new([bill(f"r{i:03d}", 10)])
    await turns(lambda: book._slices.slices >= 2)  # written, their commit not yet come
    kill(book)
    book._bills.close()
    ledger, again = open_proxy_book(tmp_path)
    assert owed(again) == (10 * (BOUND + 5), 9 * (BOUND + 5))
    on_disk = books(tmp_path / "ledger.sqlite")
    assert len(on_disk["charges"]) == BOUND + 5  # type: ignore[arg-type]
    assert on_disk["owed"] == {CLIENT: 10 * (BOUND + 5), WORKER: 9 * (BOUND + 5)}
    again.close()
    ledger.close()


async def test_a_slice_whose_commit_fails_loses_no_bill(tmp_path: Path) -> None:
    ledger, book = open_proxy_book(tmp_path)
    for i in range(BOUND):
        assert book.bill_new([bill(f"r{i:03d}", 10)])
    await turns(lambda: book._slices.slices >= 1)  # its commit to come with the last
    with a_failing_commit(book):
        await turns(lambda: book.bills_status()["pending"] == BOUND)
    # Held again, all of them (the slice undone, and those not written yet).
    assert book.bills_status()["pending"] == BOUND
    assert owed(book) == (10 * BOUND, 9 * BOUND)
    book.close()
    assert books(tmp_path / "ledger.sqlite")["owed"] == {CLIENT: 10 * BOUND, WORKER: 9 * BOUND}
    ledger.close()


# -- a proxy's requests on record ------------------------------------------------------


def record_of(request_id: str) -> ExpectedRow:
    return (request_id, CLIENT, b"h" * 32, b"", 1000, "", 1.0, b"")


async def test_requests_on_record_past_the_bound_are_written_over_turns(tmp_path: Path) -> None:
    ledger, book = open_proxy_book(tmp_path)
    assert book.bill_new([bill("r1", 10), bill("r2", 10)])
    for i in range(BOUND):
        assert book.expect_new([record_of(f"q{i:03d}")])
    assert book.journal_status()["pending"] == BOUND
    await turns(lambda: written_rows(ledger.db, "pay_expected") > 0)
    assert written_rows(ledger.db, "pay_expected") < BOUND
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        # Known all the while: one set aside is found, and not put on record twice.
        assert book.expected(f"q{BOUND - 1:03d}") is not None
        assert not book.expect_new([record_of(f"q{BOUND - 1:03d}")])
        await turns(lambda: book.journal_status()["pending"] == 0)
        await turns(lambda: len(list(tmp_path.glob("expected.journal.*"))) == 1)
        assert db.execute("SELECT count(*) FROM pay_expected").fetchone()[0] == BOUND
    finally:
        db.close()
    # Their slices folded none of the bills.
    assert book.bills_status()["pending"] == 2
    book.close()
    ledger.close()


# -- a worker's receipts ---------------------------------------------------------------


async def test_a_streams_later_receipt_while_its_first_is_set_aside_is_owed_once(
    tmp_path: Path,
) -> None:
    book = open_receipts_book(tmp_path)
    for i in range(BOUND):
        assert book.owe_new([(CHANNEL, f"r{i:03d}", 10, 0, b"k")])
    # A later receipt of the newest request (still set aside): 10 more.
    assert book.owe_new([(CHANNEL, f"r{BOUND - 1:03d}", 20, 1, b"k2")])
    assert book.channel(CHANNEL).owed_nano == 10 * BOUND + 10  # type: ignore[union-attr]
    await turns(lambda: book.pending == 1)  # the set-aside ones written, the later held
    assert book.channel(CHANNEL).owed_nano == 10 * BOUND + 10  # type: ignore[union-attr]
    book.fold()
    book.commit()
    assert rows(tmp_path / "payee.sqlite")[f"r{BOUND - 1:03d}"] == (20, 1, b"k2")
    book.close()
    again = open_receipts_book(tmp_path)
    assert again.channel(CHANNEL).owed_nano == 10 * BOUND + 10  # type: ignore[union-attr]
    assert journal_files(tmp_path) == [tmp_path / "receipts.journal.0"]
    again.close()


# -- a client's debts ------------------------------------------------------------------


async def test_a_voucher_while_debts_are_sliced_pays_them_all_and_a_kill_keeps_them(
    tmp_path: Path,
) -> None:
    book = debts_book(tmp_path)
    for i in range(BOUND):
        assert book.defer_new([(CHANNEL, f"r{i:03d}", 10, 0)])
    await turns(lambda: book.pending < BOUND)  # a slice written
    assert book.pending > 0
    signed = book.voucher(CHANNEL)
    assert signed is not None and signed.voucher.total_nano == 10 * BOUND
    await book.durable()
    kill(book)  # type: ignore[arg-type]
    assert book._journal is not None
    book._journal.close()
    again = debts_book(tmp_path)
    row = again.channel(CHANNEL)
    assert row is not None and (row.owed_nano, row.total_nano) == (10 * BOUND, 10 * BOUND)
    again.close()


async def test_debts_dropped_by_an_undone_slice_are_not_journaled_later(
    tmp_path: Path,
) -> None:
    book = debts_book(tmp_path)
    for i in range(BOUND):
        assert book.defer_new([(CHANNEL, f"r{i:03d}", 10, 0)])
    await turns(lambda: book.pending < BOUND)  # a slice written, not committed (lazy)
    with a_failing_commit(book), pytest.raises(LedgerError):  # type: ignore[arg-type]
        book.commit()
    # Never journaled, they are gone with the slices (the proxy invoices them again),
    # from memory and from what the next voucher would journal alike.
    assert book._unjournaled == [] and book.pending == 0
    row = book.channel(CHANNEL)
    assert row is not None and row.owed_nano < 10 * BOUND
    book.close()


# -- what the chain says, while rows are held --------------------------------------------


def test_the_chains_word_on_a_channel_folds_nothing_and_keeps_what_memory_owes(
    tmp_path: Path,
) -> None:
    ledger, book = open_proxy_book(tmp_path)
    assert book.bill_new([bill("r1", 100), bill("r2", 50)])
    book.set_chain_state(WORKER, deposit_nano=5 * 10**9, redeemed_nano=30)
    book.mark_redeemed(CLIENT, 70)
    # Held still, and memory current: the deposit and redeemed as the chain says, the
    # debts as the bills held say.
    assert book.bills_status()["pending"] == 2
    worker, client = book.channel(WORKER), book.channel(CLIENT)
    assert worker is not None and client is not None
    assert (worker.deposit_nano, worker.redeemed_nano, worker.owed_nano) == (5 * 10**9, 30, 135)
    assert (client.redeemed_nano, client.owed_nano) == (70, 150)
    book.close()
    ledger.close()
    # Written, the rows say the same.
    ledger, again = open_proxy_book(tmp_path)
    worker, client = again.channel(WORKER), again.channel(CLIENT)
    assert worker is not None and client is not None
    assert (worker.deposit_nano, worker.redeemed_nano, worker.owed_nano) == (5 * 10**9, 30, 135)
    assert (client.redeemed_nano, client.owed_nano) == (70, 150)
    again.close()
    ledger.close()


def test_the_chains_word_never_lowers_what_memory_knows(tmp_path: Path) -> None:
    book = open_receipts_book(tmp_path)
    assert book.owe_new([(CHANNEL, "r1", 100, 0, b"k1")])
    book.mark_redeemed(CHANNEL, 80)
    book.set_chain_state(CHANNEL, deposit_nano=1, redeemed_nano=20)  # an older view
    row = book.channel(CHANNEL)
    assert row is not None and (row.deposit_nano, row.redeemed_nano, row.owed_nano) == (
        10**12,
        80,
        100,
    )
    assert book.pending == 1
    book.close()
