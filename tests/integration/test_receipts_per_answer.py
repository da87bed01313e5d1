"""What the client checks of an answer's receipts (each check of a signature costs
it 53 µs): an answer in one piece carries only its final receipt; a stream also
carries partial ones (the first part has one, so that a stream cut at once still
bills its prompt), but the client checks a partial receipt only when it counts,
and a short stream costs one check too. A stream says in its first sealed chunk
which candidate answers, and its receipts must be signed by that worker."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import openai
import pytest

from cocoon.client import answer_opening
from cocoon.client import calls as client_calls
from cocoon.config import SyntheticBackendConfig
from cocoon.crypto import AnswerSealer
from cocoon.inference import AnswerChunk, Usage
from cocoon.worker import serving as worker_serving
from harness.network import until

from .conftest import InProcessNetwork


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Receipts the client checked, per request id."""
    counts: Counter[str] = Counter()
    original = answer_opening.check_receipt

    def counting(call: Any, *args: Any) -> None:
        counts[call.request.request_id] += 1
        original(call, *args)

    monkeypatch.setattr(answer_opening, "check_receipt", counting)
    return counts


async def test_a_short_answer_gets_one_receipt_streamed_or_not(
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
    raw = await client.chat.completions.with_raw_response.create(
        model="synthetic-small",
        messages=messages,
        max_tokens=8,
        stream=True,
        extra_headers={"x-request-id": "streamed-receipts-1"},
    )
    # Known before any text: the headers leave with the first chunk.
    streamed_worker = raw.headers["x-cocoon-worker"]
    async for _ in raw.parse():
        pass
    await client.close()
    assert checked[whole_id] == 1
    assert checked["streamed-receipts-1"] == 1
    session = inproc.session
    assert session is not None
    result = session.results["streamed-receipts-1"]
    assert result.worker is not None and result.receipt is not None
    assert streamed_worker == result.worker.key_id
    assert result.receipt.worker_key == result.worker.public_key


class _Naming:
    """A chunk encoder that makes a worker name another key in a stream's first chunk."""

    def __init__(self, names: dict[bytes, bytes]) -> None:
        self.names = names

    def encode(self, chunk: AnswerChunk) -> bytes:
        if chunk.worker:
            chunk = msgspec.structs.replace(chunk, worker=self.names[chunk.worker])
        return msgspec.msgpack.encode(chunk)


@pytest.mark.parametrize(
    ("named", "error"), [("each other", "bad_receipt"), ("a stranger", "bad_answer")]
)
async def test_a_stream_that_names_the_wrong_worker_fails(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch, named: str, error: str
) -> None:
    await inproc.start_proxy()
    keys = [
        (await inproc.start_worker(name)).credentials.identity.public_key
        for name in ("worker1", "worker2")
    ]
    # Both workers are candidates; each names the other (caught by the final
    # receipt, which only the real one can sign), or a key sealed to nobody.
    names = (
        {keys[0]: keys[1], keys[1]: keys[0]}
        if named == "each other"
        else dict.fromkeys(keys, bytes(32))
    )
    monkeypatch.setattr(worker_serving, "_chunk_encoder", _Naming(names))
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(), api_key="unused", max_retries=0
    )
    messages: Any = [{"role": "user", "content": "who are you"}]
    codes = []
    for _ in range(4):
        with pytest.raises(openai.APIError) as caught:
            stream = await client.chat.completions.create(
                model="synthetic-small", messages=messages, max_tokens=8, stream=True
            )
            async for _chunk in stream:
                pass
        codes.append(caught.value.code)
    await client.close()
    assert codes == [error] * 4


async def test_a_stream_cut_short_checks_its_latest_partial_receipt(
    inproc: InProcessNetwork, checked: Counter[str]
) -> None:
    """The held partial receipt is checked when the stream ends without its final one."""
    await inproc.start_proxy()
    await inproc.start_worker("worker1", synthetic=SyntheticBackendConfig(tokens_per_second=50))
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(), api_key="unused", max_retries=0
    )
    stream = await client.chat.completions.create(
        model="synthetic-small",
        messages=[{"role": "user", "content": "a long one"}],
        max_tokens=200,
        stream=True,
        extra_headers={"x-request-id": "cut-short-1"},
    )
    received = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
        if received == 3:
            break
    await stream.close()
    await client.close()
    session = inproc.session
    assert session is not None
    result = session.results["cut-short-1"]
    await until(lambda: result.receipt is not None, 5)
    assert result.receipt is not None
    assert checked["cut-short-1"] == 1
    assert not result.receipt.final and result.receipt.seq % 2**16 == 0  # its run's first
    assert result.worker is not None and result.receipt.worker_key == result.worker.public_key


@pytest.mark.parametrize(
    ("tag", "check_signatures", "expected"),
    [
        ("right", False, (0, "ok")),  # the tag proves the worker: no signature check
        ("right", True, (1, "ok")),  # asked to check signatures as well
        ("stripped", False, (1, "ok")),  # no tag: the signature is checked
        ("wrong", False, (0, "bad_receipt")),  # a tag that does not match fails
    ],
)
async def test_the_receipt_tag_stands_for_the_signature_at_the_client(
    inproc: InProcessNetwork,
    monkeypatch: pytest.MonkeyPatch,
    tag: str,
    check_signatures: bool,
    expected: tuple[int, str],
) -> None:
    original = AnswerSealer.receipt_tag
    if tag == "stripped":
        monkeypatch.setattr(AnswerSealer, "receipt_tag", lambda self, receipt: b"")
    elif tag == "wrong":
        monkeypatch.setattr(
            AnswerSealer, "receipt_tag", lambda self, receipt: original(self, receipt + b"x")
        )
    signatures: list[bool] = []
    checking = client_calls.verify_receipt

    def recording(data: bytes, network: str, *args: Any, signature: bool = True) -> Any:
        signatures.append(signature)
        return checking(data, network, *args, signature=signature)

    monkeypatch.setattr(client_calls, "verify_receipt", recording)
    await inproc.start_proxy()
    await inproc.start_worker("worker1")
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(check_receipt_signatures=check_signatures),
        api_key="unused",
        max_retries=0,
    )
    try:
        await client.chat.completions.create(
            model="synthetic-small", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        outcome = "ok"
    except openai.APIError as exc:
        outcome = str(exc.code)
    await client.close()
    assert (signatures.count(True), outcome) == expected


class _Bursts:
    """A backend whose answer arrives in given bursts (as the openai backend reads them)."""

    name = "bursts"

    def __init__(self, inner: Any, bursts: list[list[AnswerChunk]]) -> None:
        self.inner = inner
        self.bursts = bursts

    def models(self) -> list[str]:
        return list(self.inner.models())

    async def generate_batches(self, request: Any) -> Any:
        for burst in self.bursts:
            yield burst

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_end_that_comes_with_the_last_text_is_one_sealed_chunk(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last text and the end leave as one final chunk (one frame fewer per hop); the
    first text still leaves alone. The client gets all of it, and the final receipt."""
    await inproc.start_proxy()
    worker = await inproc.start_worker("worker1")
    usage = Usage(prompt_tokens=5, completion_tokens=3)
    worker.backend = worker.serving.backend = _Bursts(  # type: ignore[assignment]
        worker.backend,
        [
            [AnswerChunk(text="one ")],
            [AnswerChunk(text="two "), AnswerChunk(text="three")],
            [AnswerChunk(text="four"), AnswerChunk(finish_reason="stop", usage=usage)],
        ],
    )
    sealed: list[bool] = []
    original = AnswerSealer.seal

    def seal(self: AnswerSealer, plaintext: bytes, *, final: bool) -> bytes:
        sealed.append(final)
        return original(self, plaintext, final=final)

    monkeypatch.setattr(AnswerSealer, "seal", seal)
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(), api_key="unused", max_retries=0
    )
    stream = await client.chat.completions.create(
        model="synthetic-small",
        messages=[{"role": "user", "content": "bursts"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": "folded-1"},
    )
    texts, finish, counted = [], None, None
    async for chunk in stream:
        if chunk.choices:
            texts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            counted = chunk.usage.completion_tokens
    await client.close()
    assert "".join(texts) == "one two threefour"
    assert (finish, counted) == ("stop", 3)
    # "one ", "two three", then "four" folded into the end.
    assert sealed == [False, False, True]
    session = inproc.session
    assert session is not None
    receipt = session.results["folded-1"].receipt
    assert receipt is not None and receipt.final and receipt.answer_chunks == 3


@pytest.mark.parametrize(
    ("older", "body_signed"),
    [("none", False), ("client", True), ("proxy", True)],
    ids=["all-1.6", "client-1.5", "proxy-1.5"],
)
async def test_a_receipt_is_signed_over_its_body_only_for_a_reader_that_checks_it(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch, older: str, body_signed: bool
) -> None:
    """Protocol 1.6 checks a receipt by its cell signature (it covers the body's hash);
    the worker signs the body too only when a reader of 1.5 or before may check it:
    its proxy, or the client the proxy says it serves."""
    from cocoon.crypto.receipts import decode_signed_receipt
    from cocoon.proxy import relay as proxy_relay

    if older == "client":  # the proxy takes its client for one of 1.5
        monkeypatch.setattr(proxy_relay, "BODY_SIGNATURE_MINOR", 7)
    elif older == "proxy":  # the worker takes its proxy for one of 1.5
        monkeypatch.setattr(worker_serving, "BODY_SIGNATURE_MINOR", 7)
    seen: list[bytes] = []
    checking = client_calls.verify_receipt

    def recording(data: bytes, network: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(data)
        return checking(data, network, *args, **kwargs)

    monkeypatch.setattr(client_calls, "verify_receipt", recording)
    await inproc.start_proxy()
    await inproc.start_worker("worker1")
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(), api_key="unused", max_retries=0
    )
    await client.chat.completions.create(
        model="synthetic-small", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    await client.close()
    (receipt,) = seen
    signed, decoded = decode_signed_receipt(receipt)
    assert bool(signed.signature) == body_signed and len(signed.cell_signature) == 64
    # Either way it passes every check, the strict one of `cocoon verify` too.
    assert checking(receipt, decoded.network, body_signature=True) == decoded
