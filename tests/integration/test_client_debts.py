"""A client's vouchers are signed from what it owes in memory (payments/lazy_debts.py),
so memory must count each request once, however its debt arrives: from the answer,
from the proxy's invoice, or both, in either order (issue 18)."""

from __future__ import annotations

from cocoon.payments.lazy_debts import LazyDebtsBook
from harness.chain import NEEDS_LOCAL_CHAIN, Settings
from harness.network import InProcessNetwork

from .test_payments import MESSAGES, MODEL, one_answer_paid, one_answer_price, sdk, settled

pytestmark = NEEDS_LOCAL_CHAIN


async def test_an_invoice_before_the_answers_own_receipt_is_owed_once(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """The proxy invoices a request whose answer the client has not paid yet (a long
    stream, paid once a second): the answer's receipt, coming after, is owed against
    the row the invoice wrote, not as a new request in memory."""
    proxy, session, client, price = await one_answer_paid(paid)
    assert session.payer is not None and proxy.payments is not None
    # One answer whose receipt the client holds back, as a stream's first is held.
    held: list[tuple[str, object, dict[str, object]]] = []
    paying = session._pay
    session._pay = lambda request_id, receipt, **kw: held.append((request_id, receipt, kw))  # type: ignore[method-assign,assignment,func-returns-value]
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    session._pay = paying  # type: ignore[method-assign]
    ((request_id, receipt, kw),) = held
    assert kw["first"] is True
    # The proxy's invoice for it comes first...
    kept = proxy.ledger.receipt(request_id)
    assert kept is not None and session.channel is not None
    session.payments.on_invoice(session.channel, proxy.payments.book.invoice(request_id, kept))
    # ...then the answer's own receipt, the first it pays.
    session._pay(request_id, receipt, **kw)  # type: ignore[arg-type]
    session.payments.debts.flush()
    payer_book = session.payer.book
    assert isinstance(payer_book, LazyDebtsBook) and payer_book.stamped
    channel = session.payments.channel
    assert channel is not None
    row = payer_book.channel(channel)
    assert row is not None and row.owed_nano == 2 * price
    # The voucher signed from memory pays each answer once, as the proxy billed them.
    session.payer.flush(channel)
    paid_up = await settled(proxy.payments.clients)
    assert paid_up.owed_nano == paid_up.total_nano == 2 * price
    await client.close()


async def test_an_invoice_for_a_request_paid_before_a_restart_adds_nothing(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """What the e2e kill -9 test caught when vouchers were first signed from memory: an
    invoice, after a restart, for a request the rows hold already was counted in full."""
    proxy, session, client, price = await one_answer_paid(paid)
    assert session.payer is not None and proxy.payments is not None
    request_id = next(reversed(session.results))
    kept = proxy.ledger.receipt(request_id)
    assert kept is not None
    await client.close()
    network, settings = paid
    await network.stop_client()
    client = sdk(await network.start_client(payments=settings("client")))
    await one_answer_price(client)
    session = network.session
    assert session is not None and session.payer is not None and session.channel is not None
    session.payments.on_invoice(session.channel, proxy.payments.book.invoice(request_id, kept))
    channel = session.payments.channel
    assert channel is not None
    row = session.payer.book.channel(channel)
    assert row is not None and row.owed_nano == 2 * price
    paid_up = await settled(proxy.payments.clients)
    assert paid_up.owed_nano == paid_up.total_nano == 2 * price
    row = session.payer.book.channel(channel)
    assert row is not None and row.owed_nano == row.total_nano == 2 * price
    await client.close()
