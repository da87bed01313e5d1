"""A proxy's record of each request it forwards goes to a journal first
(payments/expects_journal.py): in the file before the request leaves for a
worker, read back from memory until it is folded, in the rows after, and shown
to operators."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from cocoon.payments.expects_journal import JournaledExpects, _decoder
from cocoon.payments.journal_files import read_records
from cocoon.wire.messages import Request
from harness.chain import NEEDS_LOCAL_CHAIN

from .conftest import PaidPath

pytestmark = NEEDS_LOCAL_CHAIN

MODEL = "synthetic-small"
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "on record"}
]


async def test_a_request_is_in_the_journal_before_it_leaves_and_in_the_rows_once_folded(
    paid_path: PaidPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, _, client = paid_path
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert proxy.payments is not None
    book = proxy.payments.book
    assert isinstance(book, JournaledExpects)
    journal = Path(proxy.ledger.path).with_name("expected.journal.0")
    left: list[tuple[str, bool]] = []
    open_tab = proxy.settlement.open

    async def leaving(ch: object, request: Request, envelope_hash: bytes, now: float) -> object:
        tab = await open_tab(ch, request, envelope_hash, now)  # type: ignore[arg-type]
        # The request leaves for a worker now: its record is in the file already.
        in_file = {entry[0] for entry in read_records(journal, _decoder)}
        left.append((request.request_id, request.request_id in in_file))
        return tab

    monkeypatch.setattr(proxy.settlement, "open", leaving)
    for _ in range(3):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert [on_disk for _, on_disk in left] == [True, True, True]
    # Read back from memory, as the rows will say it: the client's tag, its channel.
    for request_id, _ in left:
        expected = book.expected(request_id)
        assert expected is not None and len(expected.auth) > 0
        assert expected.channel == proxy.payments.client_channels[next(iter(proxy.clients))]
    status = proxy.snapshot()["requests_journal"]
    assert status == {"journaled": 4, "pending": 4, "folds": 0, "slices": 0}
    assert "cocoon_proxy_journal_pending_requests 4" in proxy.metrics.render()
    book.fold_records()
    book.commit()
    rows = book._db.execute("SELECT request_id FROM pay_expected").fetchall()
    assert {request_id for request_id, _ in left} <= {row[0] for row in rows}
    assert book.expected(left[0][0]) is not None
    assert proxy.snapshot()["requests_journal"] == {
        "journaled": 4,
        "pending": 0,
        "folds": 1,
        "slices": 0,
    }
