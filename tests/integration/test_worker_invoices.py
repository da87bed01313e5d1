"""A worker's book keeps a small copy of each receipt (crypto/kept_receipts.py); what
it invoices with, signed again, is the receipt the proxy billed, byte for byte in
body and cell, so the proxy pays it and never takes it for an equivocation."""

from __future__ import annotations

import msgspec
import openai

from cocoon.crypto.receipts import Receipt, decode_signed_receipt, sign_receipt
from cocoon.wire.messages import Invoice
from cocoon.worker.status import worker_status
from harness.chain import NEEDS_LOCAL_CHAIN

from .conftest import PaidPath

pytestmark = NEEDS_LOCAL_CHAIN

MODEL = "synthetic-small"


async def test_a_worker_invoices_with_the_receipt_it_sent(
    paid_path: PaidPath,
) -> None:
    proxy, worker, client = paid_path
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "keep it"}
    ]
    for _ in range(2):
        await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5)
    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=40, stream=True
    )
    async for _ in stream:
        pass
    assert worker.payee is not None and proxy.payments is not None
    book = worker.payee.book
    # The three answers' receipts went through the journal; operators see it.
    journal = worker_status(worker)["receipts_journal"]
    assert isinstance(journal, dict) and journal["journaled"] >= 3
    assert journal["folded"] + journal["pending"] == journal["journaled"]
    assert "cocoon_worker_journal_pending_receipts" in worker.stats.metrics.render()
    with book.transaction() as db:  # the worker's journal folded in first
        rows = db.execute("SELECT request_id, receipt FROM pay_requests").fetchall()
    assert len(rows) == 3
    assert book.receipts is not None
    info = proxy.router.workers[worker.credentials.key_id]
    for request_id, kept in rows:
        assert len(kept) < 200  # a receipt kept whole was about 500 bytes
        again = book.receipts(request_id, kept)
        billed = proxy.ledger.receipt(request_id)
        assert again is not None and billed is not None
        (signed_again, receipt), (signed_billed, _) = map(decode_signed_receipt, (again, billed))
        assert signed_again.body == signed_billed.body
        assert signed_again.cell_signature == signed_billed.cell_signature
        assert receipt.request_id == request_id and receipt.final
        # Shown to the proxy as an invoice: the receipt it billed, owed already.
        await proxy.settlement.on_worker_invoice(info.channel, Invoice(request_id, again))
    assert proxy.settlement.equivocations.found == 0


async def answered_and_next(paid_path: PaidPath, text: str) -> tuple[str, Receipt, bytes]:
    """A request answered and billed: its id, the receipt billed, and the next receipt
    its worker could sign for it (seq + 1, seven tokens more)."""
    proxy, worker, client = paid_path
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=5
    )
    request_id = answer.id.removeprefix("chatcmpl-")
    billed = proxy.ledger.receipt(request_id)
    assert billed is not None
    _, receipt = decode_signed_receipt(billed)
    following = msgspec.structs.replace(
        receipt, seq=receipt.seq + 1, completion_tokens=receipt.completion_tokens + 7
    )
    return request_id, receipt, sign_receipt(worker.credentials.identity.signing_key, following)


async def invoice(paid_path: PaidPath, request_id: str, receipt: bytes) -> None:
    proxy, worker, _ = paid_path
    info = proxy.router.workers[worker.credentials.key_id]
    await proxy.settlement.on_worker_invoice(info.channel, Invoice(request_id, receipt))


async def test_a_later_receipt_invoiced_pays_the_worker_what_it_adds(
    paid_path: PaidPath,
) -> None:
    """A stream cut on its way to the proxy: the worker invoices its later receipt. The
    proxy bills it by what it adds to the receipt it billed, so the voucher it signs
    at once pays the worker what its rows owe, not the earlier share again."""
    proxy, worker, _ = paid_path
    payments = proxy.payments
    assert payments is not None
    request_id, receipt, later = await answered_and_next(paid_path, "cut")
    with payments.book.transaction() as db:  # folds the bill; then as a cut stream leaves it
        db.execute("UPDATE charges SET final = 0 WHERE request_id = ?", (request_id,))
    await invoice(paid_path, request_id, later)
    channel = payments.worker_channels[worker.credentials.key_id]
    row = payments.book.channel(channel)
    assert row is not None and row.total_nano == row.owed_nano  # paid at once
    charge = proxy.ledger.charge(request_id)  # reading the rows folds what is held
    assert charge is not None and int(str(charge["receipt_seq"])) == receipt.seq + 1
    with payments.book.transaction() as db:
        (owed,) = db.execute(
            "SELECT SUM(amount_nano) FROM pay_requests WHERE channel = ?", (channel,)
        ).fetchone()
    assert row.total_nano == owed


async def test_a_receipt_past_the_final_one_is_not_paid(paid_path: PaidPath) -> None:
    """No receipt follows a request's final one: the proxy, whose ledger keeps the final
    one, pays the worker nothing more for it and bills the client nothing more."""
    proxy, worker, _ = paid_path
    payments = proxy.payments
    assert payments is not None
    request_id, receipt, past = await answered_and_next(paid_path, "done")
    assert receipt.final
    channels = (payments.worker_channels[worker.credentials.key_id],)
    channels += tuple(payments.client_channels.values())
    before = [payments.book.channel(c) for c in channels]
    await invoice(paid_path, request_id, past)
    after = [payments.book.channel(c) for c in channels]
    assert [r.owed_nano for r in after if r] == [r.owed_nano for r in before if r]
    charge = proxy.ledger.charge(request_id)
    assert charge is not None and int(str(charge["receipt_seq"])) == receipt.seq
