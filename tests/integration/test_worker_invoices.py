"""A worker's book keeps a small copy of each receipt (crypto/kept_receipts.py); what
it invoices with, signed again, is the receipt the proxy billed, byte for byte in
body and cell, so the proxy pays it and never takes it for an equivocation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import msgspec
import openai

from cocoon.crypto.receipts import Receipt, decode_signed_receipt, sign_receipt
from cocoon.inference import AnswerChunk, GenerationRequest
from cocoon.wire.messages import Invoice
from cocoon.worker.backends.base import Backend
from cocoon.worker.status import worker_status
from harness.chain import NEEDS_LOCAL_CHAIN, Settings

from .conftest import NETWORK, InProcessNetwork, PaidPath

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


class _Gated:
    """A backend that starts answering only once its gate opens."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        self.entered.set()
        await self.gate.wait()
        async for chunk in self.inner.generate(request):
            yield chunk


async def test_an_invoice_for_a_request_still_on_its_way_is_paid_once(
    paid: tuple[InProcessNetwork, Settings],
) -> None:
    """A worker invoices a receipt of a request whose answer the proxy has not relayed
    yet (after a restart of the proxy, say). The relay's tab does not know: it must
    bill the answer's receipt by what it adds to the invoiced one, not as a new bill
    owed in full in memory, or the voucher to the worker pays the invoiced share
    twice. The invoiced bill is folded into the rows before the answer comes, as a
    fold at the bound would."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    gated: list[_Gated] = []

    def gate(inner: Backend) -> Backend:
        gated.append(_Gated(inner))
        return gated[0]  # type: ignore[return-value]

    worker = await network.start_worker("worker1", payments=settings("worker1"), wrap=gate)
    client = openai.AsyncOpenAI(
        base_url=await network.start_client(payments=settings("client")),
        api_key="x",
        max_retries=0,
        timeout=20,
    )
    payments = proxy.payments
    assert payments is not None
    asked = asyncio.create_task(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "wait"}], max_tokens=5
        )
    )
    await asyncio.wait_for(gated[0].entered.wait(), 10)
    (request_id,) = proxy.inflight._running
    expected = payments.book.expected(request_id)
    assert expected is not None
    key = worker.credentials.identity
    earlier = Receipt(
        network=NETWORK,
        request_id=request_id,
        model=MODEL,
        worker_key=key.public_key,
        prompt_tokens=5,
        completion_tokens=2,
        request_hash=expected.request_hash,
        answer_hash=bytes(32),
        answer_chunks=1,
        final=False,
        started_ms=0,
        finished_ms=0,
        seq=0,  # below the first of any run of the worker (receipt_seqs.py)
    )
    await invoice((proxy, worker, client), request_id, sign_receipt(key.signing_key, earlier))
    payments.book.fold()
    gated[0].gate.set()
    answer = await asyncio.wait_for(asked, 20)
    assert answer.id.removeprefix("chatcmpl-") == request_id
    # Paid from memory, before anything folds the answer's bill.
    channel = payments.worker_channels[worker.credentials.key_id]
    payments.pay_worker_now(worker.credentials.key_id)
    row = payments.book.channel(channel)
    with payments.book.transaction() as db:  # folds first
        (owed,) = db.execute(
            "SELECT SUM(amount_nano) FROM pay_requests WHERE channel = ?", (channel,)
        ).fetchone()
    assert row is not None and row.total_nano == row.owed_nano == owed
    await client.close()
