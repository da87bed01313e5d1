"""The payer's cadence: one cumulative voucher for many answers.

`PayerSide` over a real book, its vouchers taken by a real payee book: a burst
is paid with few vouchers and never reaches the payee's credit bound, the timer
pays what is left without a new answer, stop and the next connection pay all
that is owed, and a payer killed with owed amounts not vouchered pays them
after a restart. Waits are bounded waits on conditions, never bare sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments.book import PaymentBook
from cocoon.payments.channels import check_pay_channel, signed_voucher
from cocoon.payments.errors import LedgerError
from cocoon.payments.link import ChainLink
from cocoon.payments.sides import PayeeSide, PayerSide
from cocoon.payments.vouchers import verify_voucher
from cocoon.wire.errors import ConnectionClosed
from cocoon.wire.messages import PaymentState, VoucherMsg
from harness.network import until

from .killed import kill_payer_loop, recorded_nano

NETWORK = "cocoon-test"
NETWORK_ID = 7
CHANNEL = "0:" + "7e" * 32
DEPOSIT = 1_000_000
CREDIT = 1_000
PRICE = 120
KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
PUB = KEY.public_key().public_bytes_raw()
HOUR_S = 3600.0  # an interval whose timer never fires during a test


@dataclass
class StubLink:
    """The little of a ChainLink the two sides use off chain."""

    key: Ed25519PrivateKey
    network_id: int


def link() -> ChainLink:
    return cast(ChainLink, StubLink(KEY, NETWORK_ID))


class Payee:
    """The payee's end of the channel: a book that owes what the payer owes and takes
    what the payer sends (checked at once, as a payee does when a decision depends on it)."""

    def __init__(self, path: Path) -> None:
        self.book = PaymentBook(path, network_id=NETWORK_ID)
        self.book.bind(CHANNEL, side="payee", peer="payer", payer_key=PUB, deposit_nano=DEPOSIT)
        self.side = PayeeSide(
            self.book,
            link(),
            network=NETWORK,
            max_credit_nano=CREDIT,
            redeem_threshold_nano=DEPOSIT,
        )
        self.received: list[VoucherMsg] = []

    def send(self, message: VoucherMsg) -> None:
        self.received.append(message)
        self.book.accept(signed_voucher(message, NETWORK_ID), message.request_id)

    @property
    def unpaid(self) -> int:
        row = self.book.channel(CHANNEL)
        assert row is not None
        return row.unpaid_nano


def make_payer(path: Path, interval_s: float) -> PayerSide:
    book = PaymentBook(path, network_id=NETWORK_ID, key=KEY)
    book.bind(CHANNEL, side="payer", peer="payee", payer_key=PUB, deposit_nano=DEPOSIT)
    return PayerSide(
        book,
        link(),
        network=NETWORK,
        close_delay=60,
        deposit_nano=DEPOSIT,
        top_up_below_nano=DEPOSIT // 10,
        voucher_interval_s=interval_s,
    )


@pytest.fixture
def payee(tmp_path: Path) -> Iterator[Payee]:
    end = Payee(tmp_path / "payee.sqlite")
    yield end
    end.book.close()


@pytest.fixture
async def slow(tmp_path: Path, payee: Payee) -> AsyncIterator[PayerSide]:
    """A payer whose timer never fires in a test, attached to `payee`, credit known."""
    payer = make_payer(tmp_path / "payer.sqlite", HOUR_S)
    payer.attach(CHANNEL, payee.send, max_credit_nano=CREDIT)
    yield payer
    payer.stop()
    payer.book.close()


def answer(payer: PayerSide, payee: Payee, request_id: str, amount: int = PRICE) -> None:
    """One answer as the nodes handle it: the payee bills the receipt, the payer records
    it and sends the voucher `owe` says is due."""
    payee.book.owe(CHANNEL, request_id, amount, 0, b"receipt")
    owed = payer.owe(CHANNEL, request_id, amount, 0)
    assert owed is not None
    if owed.voucher is not None:
        assert payer.send(CHANNEL, owed.voucher)


async def test_interval_zero_vouchers_every_answer(tmp_path: Path, payee: Payee) -> None:
    payer = make_payer(tmp_path / "payer.sqlite", 0.0)
    payer.attach(CHANNEL, payee.send, max_credit_nano=CREDIT)
    for i in range(5):
        answer(payer, payee, f"r{i}")
    assert [(v.seqno, v.total_nano, v.request_id) for v in payee.received] == [
        (i + 1, (i + 1) * PRICE, f"r{i}") for i in range(5)
    ]
    assert payee.unpaid == 0 and payer.vouchers == 5


async def test_a_burst_is_paid_with_few_vouchers_and_never_reaches_the_credit(
    slow: PayerSide, payee: Payee
) -> None:
    refused = []
    for i in range(100):
        # The payee's decision for the next request: within the credit bound always.
        refused.append(payee.side.refusal(CHANNEL))
        answer(slow, payee, f"r{i}")
        # What the payer has not vouchered is less than half the payee's bound.
        assert 2 * payee.unpaid < CREDIT
    assert refused == [None] * 100
    # Due each time half the credit (500) is owed: every 5th answer of 120.
    assert len(payee.received) == slow.vouchers == 100 * PRICE // 600 == 20
    assert [v.total_nano for v in payee.received] == [600 * (i + 1) for i in range(20)]
    assert all(slow.book.paid_for(CHANNEL, f"r{i}") == PRICE for i in range(100))
    row = slow.book.channel(CHANNEL)
    assert row is not None and row.owed_nano == row.total_nano == 100 * PRICE


async def test_an_unknown_credit_bound_vouchers_every_answer(tmp_path: Path, payee: Payee) -> None:
    """Until the payee's terms are known, waiting could pass its bound."""
    payer = make_payer(tmp_path / "payer.sqlite", HOUR_S)
    payer.attach(CHANNEL, payee.send)
    answer(payer, payee, "r0")
    answer(payer, payee, "r1")
    assert len(payee.received) == 2
    payer.learn_credit(CHANNEL, CREDIT)
    answer(payer, payee, "r2")
    assert len(payee.received) == 2 and payee.unpaid == PRICE
    payer.stop()


async def test_one_timer_pays_what_is_left_without_a_new_answer(
    tmp_path: Path, payee: Payee
) -> None:
    payer = make_payer(tmp_path / "payer.sqlite", 0.05)
    payer.attach(CHANNEL, payee.send, max_credit_nano=CREDIT)
    answer(payer, payee, "r0")
    timer = payer._timer
    assert timer is not None
    answer(payer, payee, "r1")
    answer(payer, payee, "r2", 2 * PRICE)
    assert payer._timer is timer  # one timer for the payer, not one per answer
    assert payee.received == [] and payee.unpaid == 4 * PRICE
    await until(lambda: payee.received, 5)
    (voucher,) = payee.received
    assert (voucher.seqno, voucher.total_nano, voucher.request_id) == (1, 4 * PRICE, "")
    assert payee.unpaid == 0 and payer._timer is None
    payer.stop()


async def test_stop_pays_everything_owed(slow: PayerSide, payee: Payee) -> None:
    for i in range(3):
        answer(slow, payee, f"r{i}")
    assert payee.received == [] and payee.unpaid == 3 * PRICE
    assert slow.stop() == 1
    assert [v.total_nano for v in payee.received] == [3 * PRICE]
    assert payee.unpaid == 0 and slow._timer is None
    # Answers still in flight at stop are recorded; no timer is armed for them.
    answer(slow, payee, "late")
    assert slow._timer is None and len(payee.received) == 1
    row = slow.book.channel(CHANNEL)
    assert row is not None and row.unpaid_nano == PRICE


async def test_the_payee_asking_is_paid_at_once(slow: PayerSide, payee: Payee) -> None:
    """`collect` (a payee at stop) shows the unpaid credit; the payer pays on the spot."""
    held: list[asyncio.Task[int]] = []
    slow.detach(CHANNEL, payee.send)
    # The payee takes vouchers as its connection does: `accept`, checked lazily.
    slow.attach(CHANNEL, lambda m: held.append(asyncio.create_task(payee.side.accept(m))))
    answer(slow, payee, "r0")
    answer(slow, payee, "r1")
    asked: list[PaymentState] = []

    def ask(state: PaymentState) -> None:
        asked.append(state)
        # As the proxy or client does on a PaymentState showing unpaid credit.
        assert slow.flush(CHANNEL)

    await asyncio.wait_for(payee.side.collect(CHANNEL, ask), 5)
    assert [(s.owed_nano, s.paid_nano, s.max_credit_nano) for s in asked] == [
        (2 * PRICE, 0, CREDIT)
    ]
    assert payee.unpaid == 0 and len(held) == 1
    # Nothing owed: collect returns without asking.
    await asyncio.wait_for(payee.side.collect(CHANNEL, ask), 5)
    assert len(asked) == 1


async def test_owed_while_unconnected_is_paid_when_attached(tmp_path: Path, payee: Payee) -> None:
    payer = make_payer(tmp_path / "payer.sqlite", 0.01)
    payer.learn_credit(CHANNEL, CREDIT)
    payee.book.owe(CHANNEL, "r0", PRICE, 0)
    assert payer.owe(CHANNEL, "r0", PRICE, 0) is not None
    await until(lambda: payer._timer is None, 5)  # the timer went off with no connection
    row = payer.book.channel(CHANNEL)
    assert row is not None and row.unpaid_nano == PRICE and row.seqno == 0
    payer.attach(CHANNEL, payee.send)
    assert [v.total_nano for v in payee.received] == [PRICE]
    payer.stop()


async def test_a_voucher_lost_with_its_connection_rides_on_the_next_pay_channel(
    slow: PayerSide, payee: Payee
) -> None:
    answer(slow, payee, "r0")
    slow.detach(CHANNEL, payee.send)

    def closed(_message: VoucherMsg) -> None:
        raise ConnectionClosed("gone")

    slow.attach(CHANNEL, closed)  # pays r0 at once: signed and stored, but it did not go
    answer(slow, payee, "r1")
    assert not slow.flush(CHANNEL)  # the same for r1
    answer(slow, payee, "r2")  # owed after, never vouchered
    row = slow.book.channel(CHANNEL)
    assert row is not None and (row.seqno, row.total_nano, row.owed_nano) == (2, 240, 360)
    assert payee.received == []
    announce = slow.announce(CHANNEL, payer_node="payer", payee_node="payee")
    check_pay_channel(announce, NETWORK, payer_node="payer", payee_node="payee")
    assert announce.latest is not None
    assert (announce.latest.seqno, announce.latest.total_nano) == (3, 3 * PRICE)
    payee.send(announce.latest)
    assert payee.unpaid == 0


async def test_owing_beyond_the_deposit_writes_nothing_and_says_low(
    slow: PayerSide, payee: Payee
) -> None:
    owed = slow.owe(CHANNEL, "big", DEPOSIT - DEPOSIT // 10 + 1, 0)
    assert owed is not None and owed.low  # less than top_up_below is left unowed
    with pytest.raises(LedgerError, match="deposit"):
        slow.owe(CHANNEL, "more", DEPOSIT // 10, 0)
    row = slow.book.channel(CHANNEL)
    assert row is not None and row.owed_nano == DEPOSIT - DEPOSIT // 10 + 1
    assert slow.book.paid_for(CHANNEL, "more") == 0
    assert slow.owe(CHANNEL, "big", 5, 1) is None  # a newer receipt that adds nothing


def test_negative_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="negative"):
        PayerSide(
            PaymentBook(tmp_path / "p.sqlite", network_id=NETWORK_ID, key=KEY),
            link(),
            network=NETWORK,
            close_delay=60,
            deposit_nano=DEPOSIT,
            top_up_below_nano=0,
            voucher_interval_s=-1,
        )


# -- the book underneath ---------------------------------------------------------------------


def test_incur_then_voucher_marks_requests_paid(tmp_path: Path) -> None:
    book = PaymentBook(tmp_path / "p.sqlite", network_id=NETWORK_ID, key=KEY)
    book.bind(CHANNEL, side="payer", peer="p", payer_key=PUB, deposit_nano=DEPOSIT)
    assert book.voucher(CHANNEL) is None  # nothing owed
    row = book.incur(CHANNEL, "r1", 100, 0)
    assert row is not None and (row.owed_nano, row.total_nano, row.unpaid_nano) == (100, 0, 100)
    row = book.incur(CHANNEL, "r1", 150, 1)
    assert row is not None and row.owed_nano == 150
    assert book.incur(CHANNEL, "r1", 150, 2) is None  # adds nothing
    assert book.paid_for(CHANNEL, "r1") == 0
    signed = book.voucher(CHANNEL)
    assert signed is not None and (signed.voucher.seqno, signed.voucher.total_nano) == (1, 150)
    verify_voucher(signed, PUB, network=NETWORK_ID, channel=CHANNEL)
    assert book.paid_for(CHANNEL, "r1") == 150 and book.voucher(CHANNEL) is None
    book.close()
    keyless = PaymentBook(tmp_path / "p.sqlite", network_id=NETWORK_ID)
    keyless.incur(CHANNEL, "r2", 1, 0)  # recording needs no key; signing does
    with pytest.raises(LedgerError, match="no payer key"):
        keyless.voucher(CHANNEL)
    keyless.close()


def test_a_book_from_before_the_cadence_owes_what_it_vouchered(tmp_path: Path) -> None:
    """Payers used to voucher every answer and leave `owed_nano` at 0."""
    path = tmp_path / "old.sqlite"
    book = PaymentBook(path, network_id=NETWORK_ID, key=KEY)
    book.bind(CHANNEL, side="payer", peer="p", payer_key=PUB, deposit_nano=DEPOSIT)
    book.pay(CHANNEL, "r1", 700, 0)
    book.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE pay_channels SET owed_nano = 0")
    db.execute("PRAGMA user_version = 0")  # as a book made then
    db.commit()
    db.close()
    book = PaymentBook(path, network_id=NETWORK_ID, key=KEY)
    row = book.channel(CHANNEL)
    assert row is not None and (row.owed_nano, row.total_nano, row.unpaid_nano) == (700, 700, 0)
    assert book.voucher(CHANNEL) is None
    book.close()


def test_a_book_migrates_once(tmp_path: Path) -> None:
    """A newer book may voucher what memory holds before its rows hold it (a journal
    folded at the next open): opening it again must not take the voucher for the debt."""
    path = tmp_path / "new.sqlite"
    PaymentBook(path, network_id=NETWORK_ID, key=KEY).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (1,)
    db.close()
    book = PaymentBook(path, network_id=NETWORK_ID, key=KEY)
    book.bind(CHANNEL, side="payer", peer="p", payer_key=PUB, deposit_nano=DEPOSIT)
    book.pay(CHANNEL, "r1", 700, 0)
    book.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE pay_channels SET owed_nano = 300")  # the rest still in a journal
    db.commit()
    db.close()
    book = PaymentBook(path, network_id=NETWORK_ID, key=KEY)
    row = book.channel(CHANNEL)
    assert row is not None and (row.owed_nano, row.total_nano) == (300, 700)
    book.close()


# -- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_payer_killed_with_unvouchered_amounts_pays_them_after_restart(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "payer.sqlite"
    kill_payer_loop(path, CHANNEL, NETWORK_ID, seed, key_byte=7, cadence=True)
    recorded = recorded_nano(path, CHANNEL)
    payer = PayerSide(
        PaymentBook(path, network_id=NETWORK_ID, key=KEY),
        link(),
        network=NETWORK,
        close_delay=60,
        deposit_nano=DEPOSIT,
        top_up_below_nano=0,
        voucher_interval_s=HOUR_S,
    )
    try:
        before = payer.book.channel(CHANNEL)
        assert before is not None and before.owed_nano == recorded
        assert before.total_nano <= recorded
        # The first connection after the restart carries a voucher for all of it.
        announce = payer.announce(CHANNEL, payer_node="payer", payee_node="payee")
        assert announce.latest is not None
        assert announce.latest.total_nano == recorded
        assert announce.latest.seqno == before.seqno + (before.total_nano < recorded)
        verify_voucher(signed_voucher(announce.latest, NETWORK_ID), PUB, network=NETWORK_ID)
    finally:
        payer.book.close()
