"""A book that holds rows in memory (a worker's journaled receipts, a proxy's bills, a
client's debts) against a book that writes every row at once, driven by the same
random receipts, vouchers, folds, restarts and kills: what each owes, what the
vouchers paid, and what is left to invoice must agree after every step. The first
settles what it holds by time, without folding it first (payments/folding.py); the
plain book writes everything before it settles. Each runs twice: folds written whole,
and folds written a slice at a time (payments/slices.py) between the other steps."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from cocoon.payments import bill_journal, expects_journal, journal, lazy_debts, slices
from cocoon.payments.book import PaymentBook
from cocoon.payments.journal import JournaledBook
from cocoon.payments.lazy_debts import LazyDebtsBook
from cocoon.payments.vouchers import SignedVoucher, Voucher, sign_voucher

from .journal_faults import kill
from .proxy_books import CLIENT, CLIENT_KEY, DEPOSIT, PROXY_KEY, WORKER, bill
from .proxy_books import NETWORK as PROXY_NETWORK
from .proxy_books import open_book as open_proxy_book
from .test_journal import CHANNEL, NETWORK, PAYER, PUB, voucher


class Folds:
    """Whole folds, or folds in slices: the books' bounds low, and each slice a step of
    its own, run when the test turns the loop it stands in for."""

    def __init__(self, sliced: bool) -> None:
        self.sliced = sliced
        self._queue: list[Callable[[], None]] = []
        self.slices = 0

    def attach(self, book: PaymentBook) -> PaymentBook:
        """A book (re)opened: its slices are scheduled here; the last one's are gone."""
        self._queue.clear()
        if self.sliced:
            for name in ("_slices", "_record_slices"):
                if (pieces := getattr(book, name, None)) is not None:
                    pieces.schedule = self._queue.append
        return book

    def turn(self, rng: random.Random, *books: tuple[PaymentBook, PaymentBook, str]) -> None:
        """A turn of the loop, now and then: the next slice; or the chain's word on what
        a channel's vouchers redeemed, to both books alike."""
        for book, plain, channel in books:
            row = plain.channel(channel)
            if row is not None and rng.random() < 0.08:
                redeemed = rng.randint(0, row.total_nano)
                book.mark_redeemed(channel, redeemed)
                plain.mark_redeemed(channel, redeemed)
        if self._queue and rng.random() < 0.5:
            self._queue.pop(0)()
            self.slices += 1

    def done(self) -> None:
        """Slices were written between the steps, where folds are sliced."""
        assert self.slices > 3 or not self.sliced


@pytest.fixture(params=["whole", "sliced"])
def folds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Folds:
    if request.param == "sliced":
        for module in (journal, bill_journal, lazy_debts, expects_journal):
            monkeypatch.setattr(module, "FOLD_ROWS", 4)
        monkeypatch.setattr(slices, "CHUNK", 2)
    return Folds(request.param == "sliced")


def journaled(root: Path) -> JournaledBook:
    book = JournaledBook(root / "j.sqlite", journal=root / "receipts.journal", network_id=NETWORK)
    if book.channel(CHANNEL) is None:
        book.bind(CHANNEL, side="payee", peer="proxy", payer_key=PUB, deposit_nano=10**12)
    return book


def same_totals(book: PaymentBook, plain: PaymentBook, *channels: str) -> None:
    """What each channel owes and was vouchered (memory: reading it folds nothing)."""
    for channel in channels:
        mine, theirs = book.channel(channel), plain.channel(channel)
        assert mine is not None and theirs is not None
        assert (mine.owed_nano, mine.total_nano, mine.seqno, mine.redeemed_nano) == (
            theirs.owed_nano,
            theirs.total_nano,
            theirs.seqno,
            theirs.redeemed_nano,
        )


def agree(book: PaymentBook, plain: PaymentBook, *, rows: bool) -> None:
    """The channel's totals always; what is left to invoice when `rows` (reading the
    rows folds what the journaled book holds)."""
    same_totals(book, plain, CHANNEL)
    if rows:
        assert sorted(book.unsettled(CHANNEL)) == sorted(plain.unsettled(CHANNEL))


def pay_both(
    rng: random.Random,
    books: tuple[PaymentBook, PaymentBook],
    channel: str,
    requests: Iterable[str],
    sign: Callable[[int, int], SignedVoucher],
) -> None:
    """The payer's next voucher, accepted by both: for all that is owed or part of it,
    naming one of `requests` or none; nothing if all is paid."""
    book, plain = books
    row = plain.channel(channel)
    assert row is not None
    if row.owed_nano <= row.total_nano:
        return
    total = row.owed_nano
    if rng.random() < 0.4:
        total = rng.randint(row.total_nano + 1, row.owed_nano)
    named = rng.choice([*requests, ""])
    signed = sign(row.seqno + 1, total)
    assert book.accept(signed, named) == plain.accept(signed, named)


@pytest.mark.parametrize("seed", range(6))
def test_a_journaled_book_settles_as_a_book_that_writes_at_once(
    tmp_path: Path, seed: int, folds: Folds
) -> None:
    rng = random.Random(seed)
    book = journaled(tmp_path)
    folds.attach(book)
    plain = PaymentBook(tmp_path / "plain.sqlite", network_id=NETWORK)
    plain.bind(CHANNEL, side="payee", peer="proxy", payer_key=PUB, deposit_nano=10**12)
    # Requests of this run, by id: (amount, seq) of the latest receipt owed. After a
    # restart only new requests get receipts (a worker's requests die with it).
    live: dict[str, tuple[int, int]] = {}
    for step in range(160):
        folds.turn(rng, (book, plain, CHANNEL))
        roll = rng.random()
        if roll < 0.55:
            items = []
            for _ in range(rng.randint(1, 4)):
                if live and rng.random() < 0.3:  # a stream's later receipt
                    request_id = rng.choice(list(live))
                    amount, seq = live[request_id]
                    amount, seq = amount + rng.randint(0, 50), seq + 1
                else:
                    request_id, amount, seq = f"r{step}-{len(items)}", rng.randint(1, 100), 0
                if any(item[1] == request_id for item in items):
                    continue
                live[request_id] = (amount, seq)
                items.append((CHANNEL, request_id, amount, seq, f"k{request_id}{seq}".encode()))
            assert book.owe_new(items)
            for item in items:
                plain.owe(*item)
        elif roll < 0.8:
            pay_both(rng, (book, plain), CHANNEL, live, lambda n, total: voucher(total, n))
        elif roll < 0.9:
            book.fold()
        elif roll < 0.95:
            book.close()
            book = journaled(tmp_path)
            folds.attach(book)
            live.clear()
        else:
            kill(book)
            book = journaled(tmp_path)
            folds.attach(book)
            live.clear()
        agree(book, plain, rows=rng.random() < 0.15)
    agree(book, plain, rows=True)
    folds.done()
    book.close()
    plain.close()


def client_voucher(seqno: int, total: int) -> SignedVoucher:
    return sign_voucher(CLIENT_KEY, Voucher(CLIENT, seqno, total), PROXY_NETWORK)


def plain_proxy(root: Path) -> PaymentBook:
    """The proxy's two channels in a book that writes every bill at once."""
    book = PaymentBook(root / "plain-proxy.sqlite", network_id=PROXY_NETWORK, key=PROXY_KEY)
    for channel, side, payer in ((CLIENT, "payee", CLIENT_KEY), (WORKER, "payer", PROXY_KEY)):
        public = payer.public_key().public_bytes_raw()
        book.bind(channel, side=side, peer=side, payer_key=public, deposit_nano=DEPOSIT)
    return book


def proxy_agree(book: PaymentBook, plain: PaymentBook, billed: list[str], *, rows: bool) -> None:
    same_totals(book, plain, CLIENT, WORKER)
    if rows:
        assert sorted(book.unsettled(CLIENT)) == sorted(plain.unsettled(CLIENT))
        paid = [book.paid_for(WORKER, r) for r in billed]
        assert paid == [plain.paid_for(WORKER, r) for r in billed]


@pytest.mark.parametrize("seed", range(6))
def test_a_proxys_journaled_bills_settle_as_bills_written_at_once(
    tmp_path: Path, seed: int, folds: Folds
) -> None:
    """Vouchers to the worker signed from memory, and the client's accepted, while bills
    are held: the same vouchers, the same requests paid, the same left to invoice."""
    rng = random.Random(seed)
    ledger, book = open_proxy_book(tmp_path)
    folds.attach(book)
    plain = plain_proxy(tmp_path)
    billed: list[str] = []
    live: dict[str, int] = {}  # request id -> seq of its latest receipt, this run
    for step in range(160):
        folds.turn(rng, (book, plain, CLIENT))
        roll = rng.random()
        if roll < 0.45:
            entries = [bill(f"r{step}-{i}", rng.randint(10, 100)) for i in range(rng.randint(1, 4))]
            assert book.bill_new(entries)
            for charge, client, amount, worker, share in entries:
                request_id = charge[0]
                plain.owe(client, request_id, amount, 0, b"R" + request_id.encode())
                plain.incur(worker, request_id, share, 0)
                billed.append(request_id)
                live[request_id] = 0
        elif roll < 0.55 and live:  # a stream's later receipt, in a transaction
            request_id = rng.choice(list(live))
            seq = live[request_id] = live[request_id] + 1
            amount = rng.randint(100, 200) + seq
            for books in (book, plain):
                books.owe(CLIENT, request_id, amount, seq, b"R" + request_id.encode())
                books.incur(WORKER, request_id, amount * 9 // 10, seq)
        elif roll < 0.7:
            mine, theirs = book.voucher(WORKER), plain.voucher(WORKER)
            assert (mine and (mine.voucher.seqno, mine.voucher.total_nano)) == (
                theirs and (theirs.voucher.seqno, theirs.voucher.total_nano)
            )
        elif roll < 0.85:
            pay_both(rng, (book, plain), CLIENT, live, client_voucher)
        elif roll < 0.92:
            book.fold()
        elif roll < 0.96:
            book.close()
            ledger.close()
            ledger, book = open_proxy_book(tmp_path)
            folds.attach(book)
            live.clear()
        else:
            kill(book)
            book._bills.close()
            ledger, book = open_proxy_book(tmp_path)
            folds.attach(book)
            live.clear()
        proxy_agree(book, plain, billed, rows=rng.random() < 0.15)
    proxy_agree(book, plain, billed, rows=True)
    folds.done()
    book.close()
    ledger.close()
    plain.close()


def debts_book(root: Path) -> LazyDebtsBook:
    book = LazyDebtsBook(
        root / "d.sqlite", journal=root / "debts.journal", network_id=NETWORK, key=PAYER
    )
    if book.channel(CHANNEL) is None:
        book.bind(CHANNEL, side="payer", peer="proxy", payer_key=PUB, deposit_nano=10**12)
    return book


@pytest.mark.parametrize("seed", range(6))
def test_a_clients_journaled_debts_pay_as_debts_written_at_once(
    tmp_path: Path, seed: int, folds: Folds
) -> None:
    """A client's vouchers signed from memory, its debts journaled before each: the same
    vouchers as a book that writes every debt at once. A kill loses the debts after the
    last voucher, which the proxy's invoices bring back; those a voucher covered, the
    journal keeps."""
    rng = random.Random(seed)
    book = debts_book(tmp_path)
    folds.attach(book)
    plain = PaymentBook(tmp_path / "plain.sqlite", network_id=NETWORK, key=PAYER)
    plain.bind(CHANNEL, side="payer", peer="proxy", payer_key=PUB, deposit_nano=10**12)
    owed: dict[str, tuple[int, int]] = {}  # request id -> (amount, seq) owed, all runs
    vouchered: dict[str, tuple[int, int]] = {}  # as the last voucher covered them
    live: set[str] = set()  # this run's requests with a debt owed
    for step in range(160):
        folds.turn(rng, (book, plain, CHANNEL))
        roll = rng.random()
        if roll < 0.45:  # new answers' first debts, held in memory
            debts = [(CHANNEL, f"r{step}-{i}", rng.randint(1, 100), 0) for i in range(3)]
            assert book.defer_new(debts)
            for debt in debts:
                plain.incur(*debt)
                owed[debt[1]] = (debt[2], 0)
                live.add(debt[1])
        elif roll < 0.6 and live:  # a stream's later receipt, or an invoice, one by one
            request_id = rng.choice(sorted(live))
            amount, seq = owed[request_id]
            owed[request_id] = (amount + rng.randint(0, 50), seq + 1)
            for each in (book, plain):
                each.incur(CHANNEL, request_id, *owed[request_id])
        elif roll < 0.8:
            mine, theirs = book.voucher(CHANNEL), plain.voucher(CHANNEL)
            book.commit()  # a voucher leaves once it is on disk
            assert (mine and (mine.voucher.seqno, mine.voucher.total_nano)) == (
                theirs and (theirs.voucher.seqno, theirs.voucher.total_nano)
            )
            vouchered = dict(owed)
        elif roll < 0.9:
            book.fold()
        else:
            if roll < 0.95:
                book.close()
            else:
                kill(book)
            book = debts_book(tmp_path)
            folds.attach(book)
            live.clear()
            # The proxy's invoices: what no voucher covered (a covered debt a kill lost
            # would leave the rows owing less than the vouchers, for good).
            for request_id, (amount, seq) in owed.items():
                if vouchered.get(request_id) != (amount, seq):
                    assert plain.incur(CHANNEL, request_id, amount, seq) is None
                    book.incur(CHANNEL, request_id, amount, seq)
        same_totals(book, plain, CHANNEL)
    for request_id in owed:
        assert book.paid_for(CHANNEL, request_id) == plain.paid_for(CHANNEL, request_id)
    folds.done()
    book.close()
    plain.close()
