"""A receipt the proxy's book refuses to bill fails its own answer, at once and in the
API's terms, and not the others billed in the same turn of the event loop
(proxy/bills.py, proxy/relay.py)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from cocoon.payments.errors import LedgerError
from harness.chain import NEEDS_LOCAL_CHAIN

from .conftest import PaidPath

pytestmark = NEEDS_LOCAL_CHAIN

MODEL = "synthetic-small"


async def test_a_bill_the_book_refuses_fails_its_own_answer_only(
    paid_path: PaidPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, _, client = paid_path
    payments = proxy.payments
    assert payments is not None
    # Fault injection: every bill goes one by one, and the book refuses the first.
    refused: list[str] = []
    owe = payments.clients.owe

    def owe_or_refuse(
        channel: str, request_id: str, amount_nano: int, seq: int, receipt: bytes | None
    ) -> int:
        if not refused:
            refused.append(request_id)
            raise LedgerError("refused by the test")
        return owe(channel, request_id, amount_nano, seq, receipt)

    monkeypatch.setattr(payments, "bill_new", lambda bills: None)  # not through the journal
    monkeypatch.setattr(payments.clients, "owe_new", lambda items: False)
    monkeypatch.setattr(payments.clients, "owe", owe_or_refuse)

    async def ask(i: int) -> str:
        answer = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"bill {i}"}], max_tokens=5
        )
        return answer.id

    results = await asyncio.gather(*(ask(i) for i in range(6)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and len(failed) == 1, results
    # Told at once, in the API's terms (it used to wait out its timeout).
    assert isinstance(failed[0], openai.InternalServerError), repr(failed[0])
    assert failed[0].code == "billing_failed"
    # Nothing of the refused bill is on the books; the others are billed in full.
    assert proxy.ledger.charge(refused[0]) is None
    await payments.book.durable()
    (row,) = payments.book.channels("payee")
    charged = proxy.ledger.totals()
    assert charged.requests == 5
    assert row.owed_nano == charged.amount_nano > 0
    # And the next answer is billed as usual.
    await ask(99)
    assert proxy.ledger.totals().requests == 6
