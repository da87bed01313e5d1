"""A streamed answer's headers leave with its first events, in one write."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cocoon.client.http_answers import EventStream


@pytest.fixture
async def stream_server() -> AsyncIterator[tuple[int, asyncio.Event, asyncio.Event]]:
    """A server whose one route prepares an EventStream, says so, and writes its
    events only when let."""
    prepared, go = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = EventStream({"X-Answer": "a1"})
        await response.prepare(request)
        prepared.set()
        await go.wait()
        await response.write(b"data: one\n\n")
        await response.write_eof(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        assert server.port is not None
        yield server.port, prepared, go
    finally:
        go.set()  # a failed test must not leave the handler waiting
        await server.close()


async def test_the_headers_leave_with_the_first_events(
    stream_server: tuple[int, asyncio.Event, asyncio.Event],
) -> None:
    port, prepared, go = stream_server
    loop = asyncio.get_running_loop()
    with socket.create_connection(("127.0.0.1", port)) as app:
        app.setblocking(False)
        await loop.sock_sendall(app, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        await prepared.wait()
        # On loopback what a write sends is queued for the reader when it returns:
        # nothing has left at `prepare`.
        with pytest.raises(BlockingIOError):
            app.recv(65536)
        go.set()
        first = await loop.sock_recv(app, 65536)
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Type: text/event-stream" in head
    assert b"X-Answer: a1" in head
    assert b"data: one\n\n" in body
