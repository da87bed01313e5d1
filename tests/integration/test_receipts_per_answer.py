"""Which parts of an answer carry a signed receipt (each one costs a signature at the
worker and a check at the client): the first part of a stream, so the client knows
before any text which of its candidates answers, and the end of every answer; an
answer read in one piece needs only the final one."""

from __future__ import annotations

from collections import Counter
from typing import Any

import openai
import pytest

from cocoon.client.session import ProxySession

from .conftest import InProcessNetwork


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Receipts the client checked, per request id."""
    counts: Counter[str] = Counter()
    original = ProxySession._check_receipt

    def counting(self: ProxySession, data: bytes, call: Any, *args: Any) -> None:
        counts[call.request.request_id] += 1
        original(self, data, call, *args)

    monkeypatch.setattr(ProxySession, "_check_receipt", counting)
    return counts


async def test_a_stream_gets_a_receipt_first_an_answer_in_one_piece_only_at_the_end(
    inproc: InProcessNetwork, checked: Counter[str]
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("worker1")
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(), api_key="unused", max_retries=0
    )
    messages: Any = [{"role": "user", "content": "count the receipts"}]
    whole = await client.chat.completions.with_raw_response.create(
        model="synthetic-small", messages=messages, max_tokens=8
    )
    whole_id = whole.headers["x-request-id"]
    assert whole.headers["x-cocoon-worker"]  # known from the final receipt
    stream = await client.chat.completions.create(
        model="synthetic-small",
        messages=messages,
        max_tokens=8,
        stream=True,
        extra_headers={"x-request-id": "streamed-receipts-1"},
    )
    async for _ in stream:
        pass
    await client.close()
    assert checked[whole_id] == 1
    assert checked["streamed-receipts-1"] == 2
