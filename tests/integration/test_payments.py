"""Payment rules inside one event loop, on the local chain (issue 5).

- a client that stops paying is refused once its unpaid credit passes the
  proxy's bound (HTTP 402, `payment_required`), and served again once it pays
  what it is invoiced;
- a channel running low is topped up from the payer's wallet by itself, and
  the proxy learns the new deposit from the chain.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import msgspec
import openai
import pytest

from cocoon.client.session import ProxySession
from cocoon.payments.book import ChannelRow
from cocoon.payments.request_auth import TAG_BYTES, TAG_MINOR
from cocoon.payments.sides import PayeeSide, worker_share
from cocoon.proxy.funding import FundingPolicy
from cocoon.proxy.service import Proxy
from cocoon.wire.messages import Invoice, Request, VoucherMsg
from cocoon.worker.service import Worker
from harness.chain import NEEDS_LOCAL_CHAIN, Settings
from harness.network import InProcessNetwork, until

pytestmark = NEEDS_LOCAL_CHAIN

MODEL = "synthetic-small"
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "pay me"}
]


def sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=20)


async def settled(
    side: PayeeSide,
    done: Callable[[ChannelRow], bool] = lambda row: row.unpaid_nano == 0,
    channel: str | None = None,
) -> ChannelRow:
    """A payee's channel (its only one, or `channel` of several: the proxy pays many
    workers) once the vouchers sent have arrived and been checked (the settle tick
    checks held vouchers; here the test does it) and it is `done` (by default: paid
    up), bounded."""
    async with asyncio.timeout(10):
        while True:
            side.check_all_held()
            if channel is None:
                (row,) = side.book.channels("payee")
            else:
                found = side.book.channel(channel)
                assert found is not None
                row = found
            if done(row):
                return row
            await asyncio.sleep(0.01)


async def one_answer_price(client: openai.AsyncOpenAI) -> int:
    answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    # The root's default prices: 1,000 nanotons a token, completion tokens x4.
    return answer.usage.prompt_tokens * 1_000 + answer.usage.completion_tokens * 4_000


async def one_answer_paid(
    paid: tuple[InProcessNetwork, Settings],
) -> tuple[Proxy, ProxySession, openai.AsyncOpenAI, int]:
    """A paying proxy, worker1 and a client, after one answer paid up: its price."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    await network.start_worker("worker1", payments=settings("worker1"))
    client = sdk(await network.start_client(payments=settings("client")))
    session = network.session
    assert session is not None and session.payer is not None and proxy.payments is not None
    price = await one_answer_price(client)
    await settled(proxy.payments.clients)
    return proxy, session, client, price


async def served_until_refused(client: openai.AsyncOpenAI) -> tuple[int, openai.APIStatusError]:
    """Answers served before the first refusal (within 10 requests), and the refusal."""
    served = 0
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(10):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
            served += 1
    return served, refused.value


async def test_a_client_that_stops_paying_is_cut_off(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    network, settings = paid
    # The bound is set below in prices of one answer, once we know it.
    proxy = await network.start_proxy(payments=settings("proxy", max_credit_nano=80_000))
    await network.start_worker("worker1", payments=settings("worker1"))
    client = sdk(await network.start_client(payments=settings("client")))
    session = network.session
    assert session is not None and proxy.payments is not None
    price = await one_answer_price(client)
    assert 20_000 < price <= 80_000 // 2
    # The first answer's voucher leaves on the client's cadence: let it arrive, so the
    # count below starts from a paid-up channel.
    await settled(proxy.payments.clients)

    # The client stops paying: it records no more receipts, so it vouchers nothing.
    paying = session._pay
    session._pay = lambda *args, **kwargs: None  # type: ignore[method-assign]
    served, refused = await served_until_refused(client)
    assert refused.status_code == 402
    assert "unpaid" in str(refused)
    assert refused.code == "payment_required"
    # Served on credit while the unpaid amount was within the bound, not once more.
    assert served == 80_000 // price + 1
    (row,) = proxy.payments.book.channels("payee")
    assert row.unpaid_nano == served * price > 80_000

    # Paying again: after a reconnect the proxy shows the unpaid receipts; the
    # client pays what its own records of those requests prove, and is served.
    session._pay = paying  # type: ignore[method-assign]
    assert session.channel is not None
    await session.channel.close()
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    # The last voucher leaves as the answer is released: it may still be on its way.
    row = await settled(proxy.payments.clients)
    assert row.owed_nano == (served + 2) * price
    assert session.payer is not None
    (mine,) = session.payer.book.channels("payer")
    assert mine.total_nano == row.total_nano == (served + 2) * price


async def test_a_forged_voucher_buys_no_credit(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """The proxy checks a voucher's signature lazily (the latest one proves all earlier
    ones); a forged one is found out at the latest when the credit bound is reached."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy", max_credit_nano=80_000))
    await network.start_worker("worker1", payments=settings("worker1"))
    client = sdk(await network.start_client(payments=settings("client")))
    session = network.session
    price = await one_answer_price(client)
    assert session is not None and session.channel is not None and session.payer is not None
    assert proxy.payments is not None
    # The first answer's voucher leaves on the client's cadence: let it arrive first.
    await settled(proxy.payments.clients)
    (mine,) = session.payer.book.channels("payer")
    # Stop paying, but claim a large payment with a voucher signed by no one.
    session._pay = lambda *args, **kwargs: None  # type: ignore[method-assign]
    forged = VoucherMsg(mine.channel, mine.seqno + 1, mine.total_nano + 10**9, bytes(64))
    session.channel.send_nowait(forged)
    served, refused = await served_until_refused(client)
    assert refused.status_code == 402
    assert refused.code == "bad_payment"
    # No more credit than an honest non-payer gets (the forged voucher replaced the
    # held honest one, which its sender loses).
    assert served <= 80_000 // price + 1
    (row,) = proxy.payments.book.channels("payee")
    assert row.total_nano <= mine.total_nano  # the forged voucher was never written


async def test_a_channel_running_low_is_topped_up(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    await network.start_worker("worker1", payments=settings("worker1"))
    # A deposit worth a few answers; topped up by as much when less than 2 remain.
    deposit = 100_000
    client = sdk(
        await network.start_client(
            payments=settings("client", deposit_nano=deposit, top_up_below_nano=60_000)
        )
    )
    session = network.session
    assert session is not None and session.payer is not None and proxy.payments is not None
    price = await one_answer_price(client)
    spent = price
    # Well beyond the first deposit: each top-up happens as the remainder runs low.
    while spent < 3 * deposit:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
        spent += price
        if session._top_up is not None:
            await session._top_up  # on chain before the next request, for a stable count
    # The last voucher leaves on the client's cadence: once the proxy has it, both
    # books hold it.
    theirs = await settled(proxy.payments.clients)
    (mine,) = session.payer.book.channels("payer")
    view = await session.payer.link.lookup(mine.channel, fresh=True)
    assert view is not None
    assert session.payer.top_ups >= 2
    assert view.state.deposit == deposit * (1 + session.payer.top_ups) == mine.deposit_nano
    assert mine.total_nano == spent
    assert theirs.total_nano == spent
    assert theirs.deposit_nano >= spent  # learned from the chain, not from the client


async def credit_known(proxy: Proxy, worker: Worker) -> None:
    """Once the worker took the proxy's channel and told it its credit bound."""
    payments = proxy.payments
    assert payments is not None
    await until(
        lambda: worker.pay_channel is not None and worker.pay_channel in payments.workers._credit
    )


async def test_a_burst_is_paid_with_few_vouchers_to_the_nanoton(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """At the default cadence (200 ms), 48 answers at once take a handful of vouchers on
    each channel, and every book ends at the sum of the receipts' prices."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    worker = await network.start_worker("worker1", payments=settings("worker1"))
    client = sdk(await network.start_client(payments=settings("client")))
    session = network.session
    assert session is not None and session.payer is not None and proxy.payments is not None
    # Until the worker's PaymentState tells the proxy its credit bound, the proxy
    # vouchers every answer (waiting could pass a bound it does not know).
    await credit_known(proxy, worker)
    channel = worker.pay_channel
    assert worker.payee is not None and channel is not None
    prices = await asyncio.gather(*(one_answer_price(client) for _ in range(48)))
    spent = sum(prices)
    theirs = await settled(proxy.payments.clients)
    (mine,) = session.payer.book.channels("payer")
    assert mine.owed_nano == mine.total_nano == theirs.owed_nano == theirs.total_nano == spent
    share = sum(worker_share(price, proxy.payments.link.commission_bp) for price in prices)
    paid_worker = await settled(worker.payee, channel=channel)
    assert paid_worker.owed_nano == paid_worker.total_nano == share
    (ours,) = proxy.payments.book.channels("payer")
    assert ours.owed_nano == ours.total_nano == share
    # Fewer vouchers than answers on both channels (the timer, not the answers, sets
    # their number here: 48 answers are far from half of either credit bound).
    assert 1 <= session.payer.vouchers < 48 and mine.seqno == session.payer.vouchers
    assert 1 <= proxy.payments.workers.vouchers < 48 and ours.seqno == paid_worker.seqno


async def test_stopping_pays_what_is_owed_on_the_cadence(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """Vouchers an hour apart: nothing is vouchered while serving, and stopping the
    client, then the proxy, pays every answer to the nanoton."""
    network, settings = paid
    hour = 3_600_000
    proxy = await network.start_proxy(payments=settings("proxy", voucher_interval_ms=hour))
    worker = await network.start_worker("worker1", payments=settings("worker1"))
    client = sdk(await network.start_client(payments=settings("client", voucher_interval_ms=hour)))
    session = network.session
    assert session is not None and session.payer is not None and proxy.payments is not None
    # The proxy learns the worker's credit bound from its PaymentState (see above).
    await credit_known(proxy, worker)
    channel = worker.pay_channel
    assert worker.payee is not None and channel is not None
    spent = sum([await one_answer_price(client) for _ in range(4)])
    proxy.payments.clients.check_all_held()
    (theirs,) = proxy.payments.book.channels("payee")
    assert (theirs.owed_nano, theirs.total_nano) == (spent, 0)
    owed_worker = worker.payee.book.channel(channel)
    assert owed_worker is not None and owed_worker.unpaid_nano > 0

    await session.stop()
    theirs = await settled(proxy.payments.clients)
    assert theirs.total_nano == spent
    await proxy.stop()
    paid_worker = await settled(worker.payee, channel=channel)
    assert paid_worker.total_nano == paid_worker.owed_nano
    (ours,) = proxy.payments.book.channels("payer")
    assert ours.owed_nano == ours.total_nano == paid_worker.total_nano


async def test_a_worker_channel_starts_small_and_grows_with_what_the_worker_earns(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """Issue 16, item 5: a worker the policy admits gets a small first deposit, not the
    proxy's whole `deposit_nano`; a top-up adds what it has earned, started as soon as
    owing the worker leaves less than a quarter of the deposit (not at the settle tick,
    which under load came after the channel ran dry)."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    assert proxy.payments is not None
    payments = proxy.payments
    # Here, a first deposit worth a few answers (the default is 1 TON of 10).
    payments.funding_policy = FundingPolicy(initial_nano=60_000, max_headroom_nano=10**9)
    await network.start_worker("worker1", payments=settings("worker1"))
    (channel,) = payments.worker_channels.values()
    row = payments.book.channel(channel)
    assert row is not None and row.deposit_nano == 60_000
    client = sdk(await network.start_client(payments=settings("client")))
    price = await one_answer_price(client)
    # Serve until what the worker earned leaves less than a quarter of its deposit: the
    # top-up is under way by the time that answer is back.
    for _ in range(40):
        assert channel not in payments.topping_up
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
        if payments.funding.low(payments.book.channel(channel)):  # type: ignore[arg-type]
            break
    earned = payments.book.channel(channel).owed_nano  # type: ignore[union-attr]
    assert earned > 0 and price > 0
    added = await payments.topping_up[channel]
    assert added == max(earned, 60_000)
    view = await payments.link.lookup(channel, fresh=True)
    assert view is not None and view.state.deposit == 60_000 + added
    assert payments.book.channel(channel).deposit_nano == 60_000 + added  # type: ignore[union-attr]
    await client.close()


@pytest.mark.parametrize("tampered", [False, True], ids=["own-tag", "tampered-tag"])
async def test_a_client_that_lost_its_records_pays_what_its_tags_prove(
    paid: tuple[InProcessNetwork, Settings], monkeypatch: pytest.MonkeyPatch, tampered: bool
) -> None:
    """A client keeps no record of the requests it tags (issue 18); the proxy's invoices
    carry the tag each request was sent with, which the client recognises as its own,
    and a tag altered on the way it does not."""
    proxy, session, client, price = await one_answer_paid(paid)
    assert session.payer is not None and proxy.payments is not None
    # Three answers the client never records owing (as after a crash)...
    paying = session._pay
    session._pay = lambda *args, **kwargs: None  # type: ignore[method-assign]
    for _ in range(3):
        await one_answer_price(client)
    session._pay = paying  # type: ignore[method-assign]
    # ...and of which it has no record either (none is kept for a tagged request; a
    # crash would lose any that were).
    book = session.payer.book
    with book.transaction() as db:
        db.execute("DELETE FROM pay_expected")
    await book.durable()
    if tampered:
        invoice = proxy.payments.book.invoice

        def altered(request_id: str, receipt: bytes) -> Invoice:
            shown = invoice(request_id, receipt)
            return msgspec.structs.replace(shown, auth=bytes([shown.auth[0] ^ 1]) + shown.auth[1:])

        monkeypatch.setattr(proxy.payments.book, "invoice", altered)
    # The proxy keeps each receipt once, in its ledger, and invoices from there (its
    # journal of bills folded in: the rows are read here).
    proxy.payments.book.fold()
    kept = proxy.payments.book._db.execute(
        "SELECT COUNT(*), SUM(LENGTH(receipt) > 0) FROM pay_requests WHERE channel = ?",
        (session.payments.channel,),
    ).fetchone()
    assert kept == (4, 0)
    # A reconnect: the proxy invoices the three; then one more answer.
    assert session.channel is not None
    await session.channel.close()
    await one_answer_price(client)
    if not tampered:
        row = await settled(proxy.payments.clients)
        assert row.owed_nano == row.total_nano == 5 * price
        return
    # Refused: the first and the last answers are paid, the three stay unpaid.
    row = await settled(proxy.payments.clients, lambda row: row.total_nano >= 2 * price)
    assert row.total_nano == 2 * price and row.unpaid_nano == 3 * price


@pytest.mark.parametrize("proxy_minor", [5, 4], ids=["tags", "no-tags"])
async def test_a_request_leaves_tagged_and_on_record_only_where_it_must(
    paid: tuple[InProcessNetwork, Settings], monkeypatch: pytest.MonkeyPatch, proxy_minor: int
) -> None:
    """Every request carries the client's tag; to a proxy too old to return tags with
    its invoices (protocol 1.4), the client's record is on disk before the request
    leaves, as another connection to its book file sees it; to one that returns them
    the client keeps no record at all (the tag proves what it would)."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    await network.start_worker("worker1", payments=settings("worker1"))
    client = sdk(await network.start_client(payments=settings("client")))
    session = network.session
    assert session is not None and session.payer is not None
    await one_answer_price(client)
    assert session.channel is not None
    monkeypatch.setattr(session.channel, "peer_minor", proxy_minor)
    ((_, _, book_file),) = session.payer.book._db.execute("PRAGMA database_list").fetchall()
    arrived: list[tuple[bytes, bool]] = []
    open_tab = proxy.settlement.open

    async def seen_at_the_proxy(
        ch: object, request: Request, envelope_hash: bytes, now: float
    ) -> object:
        other = sqlite3.connect(book_file)
        try:
            row = other.execute(
                "SELECT 1 FROM pay_expected WHERE request_id = ?", (request.request_id,)
            ).fetchone()
        finally:
            other.close()
        arrived.append((request.auth, row is not None))
        return await open_tab(ch, request, envelope_hash, now)  # type: ignore[arg-type]

    monkeypatch.setattr(proxy.settlement, "open", seen_at_the_proxy)
    await one_answer_price(client)
    ((auth, on_disk),) = arrived
    assert len(auth) == TAG_BYTES
    await session.payer.book.durable()
    assert on_disk == (proxy_minor < TAG_MINOR)
    records = session.payer.book._db.execute("SELECT COUNT(*) FROM pay_expected").fetchone()
    assert records == (1 if proxy_minor < TAG_MINOR else 0,)
