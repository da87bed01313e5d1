"""DESIGN §2, §5: the proxy routes opaque envelopes; no prompt or answer reaches it in clear."""

from __future__ import annotations

import openai
import pytest

from cocoon.wire import connection as wire_connection

from .conftest import InProcessNetwork

PROMPT_MARKER = "the launch code is PINEAPPLE-7731-ZEBRA"


@pytest.fixture
def proxy_inbox(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every byte the proxy's connections receive after TLS decryption, in order."""
    received: list[bytes] = []
    original = wire_connection.Connection.receive_data

    def recording(self: wire_connection.Connection, data: bytes, now: float):  # type: ignore[no-untyped-def]
        if self.local.role == "proxy":
            received.append(bytes(data))
        return original(self, data, now)

    monkeypatch.setattr(wire_connection.Connection, "receive_data", recording)
    return received


async def test_proxy_never_receives_prompt_or_answer_text(
    inproc: InProcessNetwork, proxy_inbox: list[bytes]
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("worker1")
    await inproc.start_worker("worker2")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)

    answers = []
    chat = await client.chat.completions.create(
        model="synthetic-small",
        messages=[{"role": "user", "content": PROMPT_MARKER}],
        max_tokens=24,
    )
    answers.append(chat.choices[0].message.content or "")
    stream = await client.chat.completions.create(
        model="synthetic-small",
        messages=[{"role": "user", "content": PROMPT_MARKER + " again"}],
        max_tokens=24,
        stream=True,
    )
    answers.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    completion = await client.completions.create(
        model="synthetic-small", prompt=PROMPT_MARKER, max_tokens=24
    )
    answers.append(completion.choices[0].text)
    # Embeddings inputs are sealed like prompts.
    await client.embeddings.create(model="synthetic-small", input=[PROMPT_MARKER + " embedded"])
    await client.close()

    seen = b"".join(proxy_inbox)
    # The recorder really sees the proxy's decrypted frames: the routing
    # fields the proxy needs are there in clear.
    assert b"synthetic-small" in seen
    assert len(seen) > 4 * 1100  # four envelopes, each with ML-KEM wraps
    assert all(len(answer.split()) >= 10 for answer in answers)
    for needle in [PROMPT_MARKER, "PINEAPPLE", *answers]:
        assert needle.encode() not in seen, f"proxy received {needle!r} in clear"
    # Words of the answers are long enough not to collide with random bytes
    # only in runs; check every 3-word run of each answer.
    for answer in answers:
        words = answer.split()
        for i in range(len(words) - 2):
            run = " ".join(words[i : i + 3]).encode()
            assert run not in seen, f"proxy received answer text {run!r}"
