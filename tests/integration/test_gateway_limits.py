"""Client input the gateway must refuse with a 4xx OpenAI error, never a 500 (issue 16,
item 1): over real HTTP on 127.0.0.1, against a whole in-process network. Each
refusal happens before anything is sealed: the session seals nothing for it."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json

import aiohttp
import openai
import pytest
from aiohttp import web

from cocoon.client import http_dispatch
from cocoon.client.http_server import OpenAIServer
from cocoon.client.limits import MAX_BODY_BYTES, MAX_PAYLOAD_BYTES
from cocoon.config import SyntheticBackendConfig
from cocoon.request_json import MAX_JSON_DEPTH
from harness.network import until

from .conftest import InProcessNetwork

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "synthetic-small", "messages": MESSAGES, "max_tokens": 3}


def chat(**fields: object) -> bytes:
    return json.dumps({**CHAT, **fields}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CASES: list[tuple[str, str, bytes, dict[str, str], int, str | None]] = [
    # (name, path, body, headers, status, param)
    ("max_tokens over 64 bits", "chat/completions", chat(max_tokens=2**64), {}, 400, "max_tokens"),
    ("seed under 64 bits", "chat/completions", chat(seed=-(2**63) - 1), {}, 400, "seed"),
    ("top_k over 64 bits", "chat/completions", chat(top_k=2**70), {}, 400, "top_k"),
    (
        "logit_bias value over 64 bits",
        "chat/completions",
        chat(logit_bias={"42": 2**65}),
        {},
        400,
        "logit_bias.42",
    ),
    (
        "dimensions over 64 bits",
        "embeddings",
        json.dumps({"model": "synthetic-small", "input": "x", "dimensions": 2**64}).encode(),
        {},
        400,
        "dimensions",
    ),
    (
        "dimensions a worker cannot build",
        "embeddings",
        json.dumps({"model": "synthetic-small", "input": "x", "dimensions": 2**62}).encode(),
        {},
        400,
        "dimensions",
    ),
    (
        "JSON nested 1,000 deep",
        "chat/completions",
        chat()[:-1] + b', "response_format": ' + nested(1000) + b"}",
        {},
        400,
        None,
    ),
    (
        "JSON nested just past the limit",
        "chat/completions",
        chat()[:-1] + b', "response_format": ' + nested(MAX_JSON_DEPTH) + b"}",
        {},
        400,
        None,
    ),
    (
        "content nested 100,000 deep",
        "completions",
        b'{"model": "synthetic-small", "prompt": ' + nested(100_000) + b"}",
        {},
        400,
        None,
    ),
    (
        "invalid UTF-8 in a string",
        "chat/completions",
        chat().replace(b'"hi"', b'"h\xffi"'),
        {},
        400,
        None,
    ),
    ("invalid UTF-8 outside strings", "chat/completions", b"\xfe\xff" + chat(), {}, 400, None),
    (
        "a gzip body that is not gzip",
        "chat/completions",
        b"this is not gzip",
        {"Content-Encoding": "gzip"},
        400,
        None,
    ),
    (
        "a deflate body that is not deflate",
        "chat/completions",
        b"\x00\x01\x02",
        {"Content-Encoding": "deflate"},
        400,
        None,
    ),
]


async def test_malformed_bodies_get_4xx_openai_errors_and_the_gateway_serves_on(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    assert inproc.session is not None
    sealed_before = len(inproc.session._recent)
    async with aiohttp.ClientSession() as http:
        for name, path, body, headers, status, param in CASES:
            async with http.post(
                f"{base_url}/{path}",
                data=body,
                headers={"Content-Type": "application/json", **headers},
                compress=False,
            ) as response:
                assert response.status == status, (name, await response.text())
                assert response.content_type == "application/json", name
                error = (await response.json())["error"]
                assert error["type"] == "invalid_request_error", name
                assert error["message"], name
                if param is not None:
                    assert error["param"] == param, (name, error)
        # A correct gzip body is read as usual.
        async with http.post(
            f"{base_url}/chat/completions",
            data=gzip.compress(chat()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ) as response:
            assert response.status == 200, await response.text()
        # None was sealed (the good gzip one was: exactly one).
        assert len(inproc.session._recent) == sealed_before + 1
        async with http.get(base_url.removesuffix("/v1") + "/jsonstats") as response:
            requests = (await response.json())["requests"]
        assert not [key for key in requests if key.endswith(" 500")], requests
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    answer = await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert answer.choices[0].message.content
    await client.close()


async def test_a_body_whose_encoding_outgrows_the_wire_frame_is_413_before_sealing(
    inproc: InProcessNetwork,
) -> None:
    """Floats are 4 bytes in this JSON and 9 in msgpack: a body under the HTTP limit
    whose sealed payload would not fit the wire frame is refused, not sent."""
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    assert inproc.session is not None
    count = MAX_PAYLOAD_BYTES // 9 + 1
    body = chat()[:-1] + b', "logit_bias": [' + b",".join([b"0.5"] * count) + b"]}"
    assert len(body) < MAX_BODY_BYTES
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base_url}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 413
        error = (await response.json())["error"]
        assert error["code"] == "request_too_large"
    assert not inproc.session._recent


async def test_aiohttps_own_parser_refusals_are_openai_json(inproc: InProcessNetwork) -> None:
    """Requests aiohttp refuses before any route runs: the answer is still JSON."""
    await inproc.start_proxy()
    base_url = await inproc.start_client()
    port = int(base_url.split(":")[2].split("/")[0])
    for raw in [
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",
    ]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1].startswith(b"4"), (raw[:40], head)
        assert b"application/json" in head, head
        assert json.loads(body)["error"]["message"], body


@pytest.mark.parametrize("path", ["chat/completions", "completions", "embeddings"])
async def test_an_empty_or_truncated_body_is_400(inproc: InProcessNetwork, path: str) -> None:
    await inproc.start_proxy()
    base_url = await inproc.start_client()
    async with aiohttp.ClientSession() as http:
        for body in [b"", b'{"model": "m", "messages": [']:
            async with http.post(f"{base_url}/{path}", data=body) as response:
                assert response.status == 400
                assert (await response.json())["error"]["message"]


# -- timeouts and counts (issue 16, item 8) ---------------------------------------


async def test_a_body_that_never_completes_is_408_within_the_body_timeout(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_dispatch, "BODY_READ_TIMEOUT_S", 0.3)
    await inproc.start_proxy()
    base_url = await inproc.start_client()
    port = int(base_url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"model": "synthetic-small"'
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"408", head
    assert json.loads(body)["error"]["message"]


async def test_headers_that_never_complete_are_cut_at_the_keepalive_timeout() -> None:
    """aiohttp closes a connection whose handler waits for a request past the keep-alive
    timeout: a request head sent a byte at a time (slowloris) is cut there (75 s in the
    gateway; 0.3 s here)."""
    server = OpenAIServer(_never_called, keepalive_timeout=0.3)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        await writer.drain()
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
    finally:
        await runner.cleanup()


async def _never_called(request: web.BaseRequest) -> web.StreamResponse:
    raise AssertionError("no request should have reached the handler")


async def test_jsonstats_counts_500s_and_requests_the_app_cut(
    inproc: InProcessNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w", synthetic=SyntheticBackendConfig(tokens_per_second=20.0))
    base_url = await inproc.start_client()
    assert inproc.pool is not None

    async def broken(refresh: bool = False) -> list[object]:
        raise RuntimeError("a bug")

    async with aiohttp.ClientSession() as http:
        with monkeypatch.context() as patch:
            # /v1/models reads the workers (once, for the ids and their tiers).
            patch.setattr(inproc.pool, "workers", broken)
            async with http.get(f"{base_url}/models") as response:
                assert response.status == 500
                assert (await response.json())["error"]["type"] == "server_error"
        # The app goes away while its answer is being made (20 tokens take a second).
        task = asyncio.create_task(
            http.post(f"{base_url}/chat/completions", json={**CHAT, "max_tokens": 20})
        )
        await until(lambda: _active_requests(inproc) > 0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

        stats: dict[str, int] = {}
        async with asyncio.timeout(10):
            while stats.get("/v1/chat/completions 499") != 1:
                async with http.get(base_url.removesuffix("/v1") + "/jsonstats") as response:
                    stats = (await response.json())["requests"]
                await asyncio.sleep(0.05)
    assert stats.get("/v1/models 500") == 1, stats


def _active_requests(net: InProcessNetwork) -> int:
    assert net.proxy is not None
    return sum(w["active"] for w in net.proxy.snapshot()["workers"])  # type: ignore[attr-defined]


async def test_header_bytes_that_are_not_utf8_are_refused_not_500(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    base_url = await inproc.start_client(api_keys=["secret"])
    port = int(base_url.split(":")[2].split("/")[0])
    for header, status in [
        (b"Authorization: Bearer \xff\xfe", b"401"),
        (b"Authorization: Bearer secret\r\nIdempotency-Key: \xff\xfe", b"400"),
    ]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            + header
            + b"\r\n\r\n{}"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"}}"), 5)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status, (header, head)
        assert json.loads(body)["error"]["message"]
