"""The bench tells a streamed answer from one held to its end and sent whole.

A server that buffers each answer (as the reference C++ Cocoon's worker does
with a stream its token counter cannot parse) has its first token arrive with
its last; its streamed numbers are then those of whole answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import web

from cocoon.bench.answers import Outcome, read_stream, request_body, whole_share
from cocoon.bench.plan import RequestShape
from cocoon.bench.report import whole_answer_notes
from cocoon.bench.results import LoadResult

from .loads import load_result

TOKENS = 6


def _events() -> list[bytes]:
    text = [
        b'data: {"choices":[{"index":0,"delta":{"content":"t%d "}}]}\n\n' % i for i in range(TOKENS)
    ]
    usage = b'data: {"choices":[],"usage":{"completion_tokens":%d}}\n\n' % TOKENS
    return [*text, usage, b"data: [DONE]\n\n"]


async def _whole(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"".join(_events()))
    await response.write_eof()
    return response


async def _streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in _events():
        await response.write(event)
        # The next token is made later: the reader sees this one before it.
        await asyncio.sleep(0.005)
    await response.write_eof()
    return response


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/whole", _whole)
    app.router.add_post("/streamed", _streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _outcome(url: str) -> Outcome:
    body = request_body(RequestShape(model="m", prompt="hi", max_tokens=TOKENS), stream=True)
    async with aiohttp.ClientSession() as session:
        return await read_stream(session, url, body)


async def test_an_answer_sent_whole_is_one_read_and_a_stream_is_many(server: str) -> None:
    whole = await _outcome(server + "/whole")
    streamed = await _outcome(server + "/streamed")
    assert whole.error is None and streamed.error is None
    assert whole.tokens == streamed.tokens == TOKENS
    assert whole.text_reads == 1
    assert streamed.text_reads == TOKENS
    assert whole_share([whole, whole, streamed]) == pytest.approx(2 / 3)
    # An answer of one token cannot tell: it is left out.
    assert whole_share([Outcome(0.0, tokens=1, text_reads=1)]) is None


def test_the_report_names_a_target_that_did_not_stream_paced_tokens() -> None:
    results = [
        load_result("cocoon", whole=0.02),
        load_result("ref", whole=1.0),
        load_result("ref", "plain"),
    ]
    assert whole_answer_notes(results, token_delay_ms=10) == [
        "ref, streamed at c=64: 100% of answers arrived whole although their tokens were"
        " made 10 ms apart, the first token with the last; it did not stream them"
    ]
    # Tokens made at once may all be read at once from a server that streams them.
    assert whole_answer_notes(results, token_delay_ms=0) == []


def test_a_report_of_before_the_measure_still_reads() -> None:
    old = msgspec.json.encode(load_result("ref"))
    fields = msgspec.json.decode(old)
    del fields["whole_answers"]
    assert msgspec.json.decode(msgspec.json.encode(fields), type=LoadResult).whole_answers is None
