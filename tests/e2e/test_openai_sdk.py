"""The official OpenAI SDK (and curl-style raw HTTP) against `cocoon up`, as a user calls it.

The workers run the synthetic backend: the same prompt, seed and max_tokens
give the same text; a natural answer is 32-64 tokens long (one word a token),
so a max_tokens below 32 always ends with "length".
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import urllib.error
import urllib.request
import uuid
from typing import Any

import openai
import pytest

from cocoon.crypto.receipts import verify_receipt
from cocoon.crypto.signing import key_id

from .conftest import UpProcess, get_json

pytestmark = pytest.mark.slow

NETWORK = "cocoon-local"  # `cocoon up`'s default network name


def _client(up: UpProcess) -> openai.OpenAI:
    # No SDK retries: a failure must show, not be hidden by a second try.
    return openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=30)


def _model(up: UpProcess) -> str:
    return up.models[0]


def _messages(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def _billed_requests(up: UpProcess) -> int:
    """Requests billed by every proxy of the network."""
    return sum(
        int(get_json(f"{status}/jsonstats")["billing"]["requests"])
        for status in up.proxies.values()
    )


# -- models ----------------------------------------------------------------------


def test_models_list_returns_printed_models(up_network: UpProcess) -> None:
    assert up_network.models and all(up_network.models)
    models = _client(up_network).models.list()
    assert sorted(m.id for m in models.data) == sorted(up_network.models)
    assert all(m.object == "model" for m in models.data)


# -- chat, not streamed --------------------------------------------------------------


def test_chat_usage_headers_and_receipt(up_network: UpProcess) -> None:
    client = _client(up_network)
    raw = client.chat.completions.with_raw_response.create(
        model=_model(up_network), messages=_messages("tell me about cocoons"), seed=7
    )
    completion = raw.parse()
    choice = completion.choices[0]
    text = choice.message.content
    assert text and text.strip()
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"  # natural end: no max_tokens given
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == len(text.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    request_id = raw.headers["x-request-id"]
    worker = raw.headers["x-cocoon-worker"]
    assert request_id and worker
    assert completion.id.endswith(request_id)
    # The header receipt is the worker's signed receipt, verifiable offline.
    header_receipt = verify_receipt(base64.b64decode(raw.headers["x-cocoon-receipt"]), NETWORK)
    assert header_receipt.request_id == request_id
    assert key_id(header_receipt.worker_key) == worker

    body = get_json(f"{up_network.base_url}/receipts/{request_id}")
    assert body["request_id"] == request_id
    assert body["signature"] == "valid"
    assert body["final"] is True
    assert body["worker"]["key_id"] == worker
    receipt = body["receipt"]
    assert receipt["request_id"] == request_id
    assert receipt["model"] == _model(up_network)
    assert receipt["final"] is True
    assert receipt["prompt_tokens"] == usage.prompt_tokens
    assert receipt["completion_tokens"] == usage.completion_tokens
    assert key_id(bytes.fromhex(receipt["worker_key"])) == worker
    signed = verify_receipt(base64.b64decode(body["signed"]), NETWORK)
    assert signed.completion_tokens == usage.completion_tokens
    assert signed.worker_key.hex() == receipt["worker_key"]


def test_unknown_receipt_is_404(up_network: UpProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        get_json(f"{up_network.base_url}/receipts/no-such-request")
    assert info.value.code == 404
    info.value.close()


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_max_tokens_respected(up_network: UpProcess, field: str) -> None:
    limit = 5 if field == "max_tokens" else 7
    args: dict[str, Any] = {
        "model": _model(up_network),
        "messages": _messages(f"a long story please ({field})"),
        field: limit,
    }
    completion = _client(up_network).chat.completions.create(**args)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == limit
    assert choice.message.content is not None
    assert len(choice.message.content.split()) == limit


def test_max_completion_tokens_wins_over_max_tokens(up_network: UpProcess) -> None:
    completion = _client(up_network).chat.completions.create(
        model=_model(up_network),
        messages=_messages("both limits"),
        max_tokens=20,
        max_completion_tokens=4,
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    assert completion.choices[0].finish_reason == "length"


# -- chat, streamed --------------------------------------------------------------


def test_chat_stream_matches_non_streamed_with_usage_last(up_network: UpProcess) -> None:
    client = _client(up_network)
    args: dict[str, Any] = {
        "model": _model(up_network),
        "messages": _messages("stream this deterministic answer"),
        "seed": 11,
        "max_tokens": 40,
    }
    full = client.chat.completions.create(**args)
    expected = full.choices[0].message.content
    assert expected

    chunks = list(
        client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    assert chunks, "no chunks"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    body = chunks[:-1]
    assert all(c.usage is None for c in body)
    assert all(len(c.choices) == 1 for c in body)
    assert body[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in body if c.choices[0].delta.content]
    assert "".join(contents) == expected
    assert len(contents) == last.usage.completion_tokens
    assert full.usage is not None
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.prompt_tokens == full.usage.prompt_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in body]
    assert finishes[-1] == full.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_include_usage_has_no_usage_chunk(up_network: UpProcess) -> None:
    chunks = list(
        _client(up_network).chat.completions.create(
            model=_model(up_network), messages=_messages("no usage please"), stream=True
        )
    )
    assert chunks
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason is not None


# -- completions -------------------------------------------------------------------


def test_completions_streamed_and_not(up_network: UpProcess) -> None:
    client = _client(up_network)
    args: dict[str, Any] = {"model": _model(up_network), "prompt": "Once upon a time", "seed": 3}

    # OpenAI's completions default is 16 tokens; natural answers are longer.
    full = client.completions.create(**args)
    assert full.object == "text_completion"
    text = full.choices[0].text
    assert text
    assert full.choices[0].finish_reason == "length"
    assert full.usage is not None
    assert full.usage.completion_tokens == 16
    assert full.usage.prompt_tokens == 4  # synthetic: one token a word
    assert full.usage.total_tokens == 20

    chunks = list(
        client.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 16
    texts = [c.choices[0].text for c in chunks[:-1] if c.choices[0].text]
    assert "".join(texts) == text
    assert len(texts) == 16
    assert chunks[-2].choices[0].finish_reason == "length"

    short = client.completions.create(**args, max_tokens=3)
    assert short.usage is not None and short.usage.completion_tokens == 3
    assert text.startswith(short.choices[0].text)  # same seed and prompt: a prefix


def test_completions_prompt_as_single_item_list(up_network: UpProcess) -> None:
    client = _client(up_network)
    one = client.completions.create(model=_model(up_network), prompt="listed", max_tokens=5)
    listed = client.completions.create(model=_model(up_network), prompt=["listed"], max_tokens=5)
    assert one.choices[0].text == listed.choices[0].text


# -- stop, sampling ----------------------------------------------------------------


def test_stop_sequence_cuts_before_it(up_network: UpProcess) -> None:
    client = _client(up_network)
    args: dict[str, Any] = {
        "model": _model(up_network),
        "messages": _messages("where should this stop?"),
        "seed": 5,
        "max_tokens": 20,
    }
    original = client.chat.completions.create(**args)
    text = original.choices[0].message.content
    assert text is not None
    assert original.choices[0].finish_reason == "length"
    words = text.split()
    stop_word = words[len(words) // 2]
    cut = text.find(stop_word)
    assert cut > 0

    stopped = client.chat.completions.create(**args, stop=[stop_word])
    assert stopped.choices[0].finish_reason == "stop"
    answer = stopped.choices[0].message.content or ""
    assert stop_word not in answer
    assert answer == text[:cut]
    assert stopped.usage is not None and original.usage is not None
    assert stopped.usage.completion_tokens < original.usage.completion_tokens

    streamed = client.chat.completions.create(**args, stop=stop_word, stream=True)
    pieces = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == answer
    assert pieces[-1].choices[0].finish_reason == "stop"


def test_sampling_parameters_pass_through(up_network: UpProcess) -> None:
    client = _client(up_network)
    args: dict[str, Any] = {
        "model": _model(up_network),
        "messages": _messages("sample me"),
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 1234,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "user": "e2e-tester",
        "max_tokens": 12,
    }
    first = client.chat.completions.create(**args)
    again = client.chat.completions.create(**args)
    assert first.choices[0].message.content
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.usage is not None and first.usage.completion_tokens == 12
    other_seed = client.chat.completions.create(**{**args, "seed": 4321})
    assert other_seed.choices[0].message.content != first.choices[0].message.content

    completion = client.completions.create(
        model=_model(up_network),
        prompt="sampled completion",
        temperature=0.2,
        top_p=0.5,
        seed=9,
        presence_penalty=-0.5,
        user="e2e-tester",
    )
    assert completion.choices[0].text

    # Out-of-range values are refused with the offending parameter named.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**{**args, "temperature": 3})
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict)
    assert info.value.body.get("param") == "temperature"


# -- errors ------------------------------------------------------------------------


def test_unknown_model_is_404_model_not_found(up_network: UpProcess) -> None:
    client = _client(up_network)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=_messages("hi"))
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="no-such-model", prompt="hi")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=_messages("hi"), stream=True)
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", b'{"model": "m", "messages": [', None),
        ("/chat/completions", b"not json at all", None),
        ("/chat/completions", b'["a", "list"]', None),
        ("/chat/completions", b'{"model": "MODEL"}', "messages"),
        ("/chat/completions", b'{"model": "MODEL", "messages": "hello"}', "messages"),
        (
            "/chat/completions",
            b'{"model": "MODEL", "messages": [{"content": "x"}]}',
            "messages[0].role",
        ),
        ("/chat/completions", b'{"model": "MODEL", "messages": []}', "messages"),
        ("/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (
            "/chat/completions",
            b'{"model": "MODEL", "messages": [{"role": "user", "content": "x"}],'
            b' "max_tokens": "ten"}',
            "max_tokens",
        ),
        ("/completions", b'{"model": "MODEL"}', "prompt"),
        ("/completions", b'{"model": "MODEL", "prompt": 5}', "prompt"),
    ],
)
def test_malformed_body_is_400_openai_error(
    up_network: UpProcess, path: str, body: bytes, param: str | None
) -> None:
    body = body.replace(b"MODEL", _model(up_network).encode())
    status, headers, raw = _post(up_network.base_url + path, body)
    assert status == 400
    assert headers.get_content_type() == "application/json"
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert "code" in error and "param" in error
    if param is not None:
        assert error["param"] == param


def test_n_2_is_bad_request(up_network: UpProcess) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(up_network).chat.completions.create(
            model=_model(up_network), messages=_messages("two please"), n=2
        )
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict)
    assert info.value.body.get("param") == "n"


def test_unknown_route_is_openai_404(up_network: UpProcess) -> None:
    status, _, raw = _post(f"{up_network.base_url}/no/such/route", b"{}")
    assert status in (404, 405)
    assert "error" in json.loads(raw)


# -- idempotency -------------------------------------------------------------------


def test_same_request_id_runs_and_bills_once(up_network: UpProcess) -> None:
    request_id = f"idem-{uuid.uuid4().hex}"
    body = json.dumps(
        {"model": _model(up_network), "messages": _messages("say it once"), "max_tokens": 10}
    ).encode()
    url = f"{up_network.base_url}/chat/completions"
    before = _billed_requests(up_network)
    first = _post(url, body, {"X-Request-Id": request_id})
    second = _post(url, body, {"X-Request-Id": request_id})
    after = _billed_requests(up_network)

    assert first[0] == 200, first[2]
    assert second[0] == 200, second[2]
    assert first[1]["x-request-id"] == request_id == second[1]["x-request-id"]
    one, two = json.loads(first[2]), json.loads(second[2])
    assert one["choices"][0]["message"]["content"]
    assert one["choices"][0]["message"]["content"] == two["choices"][0]["message"]["content"]
    assert one["usage"] == two["usage"]
    # The proxy bills before it forwards the final frame, so the count is settled.
    assert after - before == 1

    charges = 0
    for name in up_network.proxies:  # billed once across every proxy of the network
        db = sqlite3.connect(up_network.data_dir / name / "ledger.sqlite")
        try:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM charges WHERE request_id = ?", (request_id,)
            ).fetchone()
        finally:
            db.close()
        charges += count
    assert charges == 1


def test_invalid_request_id_header_is_400(up_network: UpProcess) -> None:
    body = json.dumps({"model": _model(up_network), "messages": _messages("x")}).encode()
    status, _, raw = _post(
        f"{up_network.base_url}/chat/completions", body, {"X-Request-Id": "bad id with spaces"}
    )
    assert status == 400
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"


# -- concurrency -------------------------------------------------------------------


async def test_fifty_concurrent_streams(up_network: UpProcess) -> None:
    client = openai.AsyncOpenAI(
        base_url=up_network.base_url, api_key="unused", max_retries=0, timeout=60
    )

    async def one(index: int) -> tuple[int, int, int, str | None]:
        limit = 5 + index % 20  # always below the natural length
        stream = await client.chat.completions.create(
            model=_model(up_network),
            messages=_messages(f"concurrent stream number {index}"),
            max_tokens=limit,
            stream=True,
            stream_options={"include_usage": True},
        )
        contents = 0
        finish: str | None = None
        usage_tokens = -1
        async for chunk in stream:
            if chunk.usage is not None:
                usage_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    contents += 1
                if choice.finish_reason is not None:
                    finish = choice.finish_reason
        return limit, contents, usage_tokens, finish

    try:
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 60)
    finally:
        await client.close()
    assert len(results) == 50
    for limit, contents, usage_tokens, finish in results:
        assert finish == "length"
        assert contents == usage_tokens == limit


# -- curl-style --------------------------------------------------------------------


def test_raw_sse_ends_with_done(up_network: UpProcess) -> None:
    body = json.dumps(
        {
            "model": _model(up_network),
            "messages": _messages("curl me"),
            "stream": True,
            "max_tokens": 6,
        }
    ).encode()
    request = urllib.request.Request(
        f"{up_network.base_url}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/event-stream"
        assert response.headers["x-request-id"]
        raw = response.read().decode()
    events = [line for line in raw.split("\n") if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert raw.endswith("data: [DONE]\n\n")
    payloads = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads)
    assert len(text.split()) == 6
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


# -- attestation and status --------------------------------------------------------


def test_attestation_and_proxy_status_pages(up_network: UpProcess) -> None:
    # At least one request, so the proxy's request counter has a sample.
    _client(up_network).chat.completions.create(
        model=_model(up_network), messages=_messages("status"), max_tokens=2
    )
    attestation = get_json(f"{up_network.base_url}/attestation")
    proxy = attestation["proxy"]
    assert proxy is not None and proxy["key_id"]
    # `cocoon up` attests every node with simulated TDX quotes by default.
    assert proxy["trusted"] is True
    assert proxy["provider"] == "sim-tdx"
    assert len(attestation["proxies"]) == 2  # and starts two proxies
    workers = attestation["workers"]
    assert len(workers) == 2  # and two workers
    assert all(w["trusted"] is True and w["provider"] == "sim-tdx" for w in workers)
    assert all(_model(up_network) in w["models"] for w in workers)
    assert attestation["node"]["trusted"] is True

    # The proxy in use shows the workers (each proxy has its own status page).
    in_use = next(p for p in attestation["proxies"] if p["in_use"])
    status = next(
        url
        for url in up_network.proxies.values()
        if get_json(f"{url}/jsonstats")["node"]["key_id"] == in_use["key_id"]
    )
    with urllib.request.urlopen(f"{status}/", timeout=10) as response:
        assert response.headers.get_content_type() == "text/html"
        page = response.read().decode()
    assert "simulated TDX quote verified" in page
    assert proxy["key_id"] in page
    for worker in workers:
        assert worker["key_id"] in page
        # Its reputation at the client (attestation) and at the proxy (the page).
        assert 0 <= worker["reputation"]["score"] <= 1
    assert "<th>reputation</th>" in page

    with urllib.request.urlopen(f"{status}/metrics", timeout=10) as response:
        assert response.headers.get_content_type() == "text/plain"
        metrics = response.read().decode()
    assert "# TYPE cocoon_proxy_requests_total counter" in metrics
    samples = [
        line for line in metrics.splitlines() if line.startswith("cocoon_proxy_requests_total{")
    ]
    assert samples
    assert sum(float(line.rsplit(" ", 1)[1]) for line in samples) >= 1


def test_workers_serve_their_own_stats(up_network: UpProcess) -> None:
    client = openai.OpenAI(base_url=up_network.base_url, api_key="x", max_retries=0)
    client.chat.completions.create(
        model=up_network.models[0], messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    served = 0
    for ready in sorted((up_network.data_dir / "run").glob("worker*.ready")):
        http = json.loads(ready.read_text())["http"]
        stats = get_json(f"{http}/jsonstats")
        assert stats["role"] == "worker"
        assert stats["node"]["trusted"] is True
        assert stats["proxy"]["key_id"]
        assert len(stats["proxies"]) == 2 and all(p["connected"] for p in stats["proxies"])
        served += stats["requests"]["completed"]
        with urllib.request.urlopen(f"{http}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "# TYPE cocoon_worker_requests_total counter" in text
    assert served >= 1
