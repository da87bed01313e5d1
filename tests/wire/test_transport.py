"""The asyncio glue over real TLS on 127.0.0.1: handshake, ordering, backpressure, close."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cocoon.tee import tls_files
from cocoon.wire.connection import Connection
from cocoon.wire.endpoints import connect, serve, server_ssl_context
from cocoon.wire.errors import ConnectionClosed, LocalProtocolError
from cocoon.wire.handshake import State
from cocoon.wire.messages import AnswerEnd, AnswerPart, Message, Request, WorkerLoad
from cocoon.wire.transport import STREAM_BUFFER, Channel
from harness.network import until

from .conftest import Node, make_node, open_policy, request

Answer = Callable[[Channel, Request], Awaitable[None]]


class Proxy:
    """A server on 127.0.0.1 that answers each Request with `answer` in its own task."""

    def __init__(self, answer: Answer, on_ready: Callable[[Channel], Awaitable[None]] | None):
        self.node: Node = make_node("proxy", now=time.time())
        self.answer = answer
        self.on_ready = on_ready
        self.channels: list[Channel] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, tmp_path: Path) -> None:
        key = self.node.identity.signing_key
        cert_file, key_file = tls_files(key, self.node.local.certificate, tmp_path)
        self.server = await serve(
            "127.0.0.1",
            0,
            local=lambda: self.node.local,
            policy=open_policy(),
            accept_roles=frozenset({"client"}),
            ssl_context=server_ssl_context(cert_file, key_file),
            on_channel=self._on_channel,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _on_channel(self, channel: Channel) -> None:
        self.channels.append(channel)
        if self.on_ready is not None:
            await self.on_ready(channel)
        await channel.run(self._handle)

    async def _handle(self, channel: Channel, message: Message) -> None:
        if isinstance(message, Request):
            task = asyncio.create_task(self.answer(channel, message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for channel in self.channels:
            await channel.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class Client:
    """A connected client channel whose read loop runs in the background."""

    def __init__(self, channel: Channel, received: list[Message]) -> None:
        self.channel = channel
        self.received = received
        self.task: asyncio.Task[None] | None = None


@contextlib.asynccontextmanager
async def proxy_and_client(
    tmp_path: Path,
    answer: Answer,
    on_ready: Callable[[Channel], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[Proxy, Client]]:
    proxy = Proxy(answer, on_ready)
    await proxy.start(tmp_path)
    node = make_node("client", now=time.time())
    channel = await connect(
        "127.0.0.1",
        proxy.port,
        local=node.local,
        policy=open_policy(),
        accept_roles=frozenset({"proxy"}),
    )
    received: list[Message] = []

    async def collect(_: Channel, message: Message) -> None:
        received.append(message)

    client = Client(channel, received)
    client.task = asyncio.create_task(channel.run(collect))
    try:
        yield proxy, client
    finally:
        await channel.close()
        await proxy.stop()
        client.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client.task


async def answer_with_parts(channel: Channel, message: Request, count: int, size: int) -> None:
    payload = b"x" * size
    for index in range(count):
        await channel.send(AnswerPart(message.request_id, index, payload))
    await channel.send(AnswerEnd(message.request_id, count, b"", b"receipt"))


async def no_answer(channel: Channel, message: Request) -> None:
    pass


async def test_handshake_over_tls(tmp_path: Path) -> None:
    async with asyncio.timeout(5), proxy_and_client(tmp_path, no_answer) as (proxy, client):
        await until(lambda: len(proxy.channels) == 1, 5)
        (server_side,) = proxy.channels
        assert client.channel.peer_role == "proxy"
        assert client.channel.key_id == proxy.node.identity.key_id
        assert client.channel.peer.der == proxy.node.local.certificate
        assert client.channel.verdict.trusted is False
        assert server_side.peer_role == "client"
        assert server_side.verdict.trusted is False
        assert not client.channel.closed and not server_side.closed


async def test_request_answered_by_100_parts_in_order(tmp_path: Path) -> None:
    async def answer(channel: Channel, message: Request) -> None:
        await answer_with_parts(channel, message, 100, 64)

    async with asyncio.timeout(5), proxy_and_client(tmp_path, answer) as (_, client):
        stream = client.channel.request(request("r1"))
        items = [item async for item in stream]
        assert [item.index for item in items] == list(range(101))
        assert all(isinstance(item, AnswerPart) for item in items[:-1])
        assert isinstance(items[-1], AnswerEnd) and items[-1].receipt == b"receipt"
        assert len(client.channel.connection.streams) == 0


async def test_concurrent_requests_on_one_channel(tmp_path: Path) -> None:
    async def answer(channel: Channel, message: Request) -> None:
        await answer_with_parts(channel, message, 50, 16)

    async with asyncio.timeout(5), proxy_and_client(tmp_path, answer) as (_, client):
        streams = [client.channel.request(request(f"r{i}")) for i in range(5)]

        async def drain(stream: AsyncIterator[AnswerPart | AnswerEnd]) -> list[int]:
            return [item.index async for item in stream]

        results = await asyncio.gather(*(drain(s) for s in streams))
        assert results == [list(range(51))] * 5


async def test_slow_reader_backpressures_the_sender(tmp_path: Path) -> None:
    total = 20_000
    sent = 0

    async def answer(channel: Channel, message: Request) -> None:
        nonlocal sent
        payload = b"x" * 1024
        for index in range(total):
            await channel.send(AnswerPart(message.request_id, index, payload))
            sent = index + 1
        await channel.send(AnswerEnd(message.request_id, total, b"", b"receipt"))

    async with asyncio.timeout(8), proxy_and_client(tmp_path, answer) as (proxy, client):
        stream = client.channel.request(request("big"))
        await until(lambda: len(proxy.channels) == 1 and sent > 0, 5)
        writer = proxy.channels[0].writer

        # The server is blocked once its transport holds unsent bytes and it
        # has stopped making progress: the client's socket is full.
        progress = -1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < total:
            if writer.transport.get_write_buffer_size() > 0 and sent == progress:
                break
            progress = sent
            await asyncio.sleep(0.05)
        assert sent < total, "the server sent everything into an unread stream"
        assert writer.transport.get_write_buffer_size() > 0
        assert len(stream._items) <= STREAM_BUFFER

        # Reading now delivers everything, in order, and the buffer stays bounded.
        expected = 0
        async for item in stream:
            assert item.index == expected
            assert len(stream._items) <= STREAM_BUFFER
            expected += 1
        assert expected == total + 1
        assert isinstance(item, AnswerEnd)


async def test_closing_the_server_fails_open_streams(tmp_path: Path) -> None:
    async def answer(channel: Channel, message: Request) -> None:
        await channel.send(AnswerPart(message.request_id, 0, b"first"))
        await channel.close()

    async with asyncio.timeout(5), proxy_and_client(tmp_path, answer) as (_, client):
        stream = client.channel.request(request("r1"))
        first = await anext(stream)
        assert isinstance(first, AnswerPart) and first.index == 0
        with pytest.raises(ConnectionClosed):
            await anext(stream)
        await until(lambda: client.channel.closed, 5)
        with pytest.raises(ConnectionClosed):
            await client.channel.send(request("r2"))


async def test_message_sent_right_after_the_handshake_is_delivered(tmp_path: Path) -> None:
    # The acceptor's AuthOk and its first message can arrive in one read.
    async def announce(channel: Channel) -> None:
        await channel.send(WorkerLoad(1, 2))

    async with (
        asyncio.timeout(5),
        proxy_and_client(tmp_path, no_answer, on_ready=announce) as (_, client),
    ):
        await until(lambda: client.received == [WorkerLoad(1, 2)], 2)


async def test_frame_in_the_same_read_as_auth_ok_reaches_the_handler(tmp_path: Path) -> None:
    # A hand-driven acceptor writes AuthOk and a WorkerLoad in one TLS record,
    # which is what a busy network does to two back-to-back writes.
    node = make_node("proxy", now=time.time())
    cert_file, key_file = tls_files(node.identity.signing_key, node.local.certificate, tmp_path)
    done = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        acceptor = Connection(
            connector=False,
            local=node.local,
            policy=open_policy(),
            accept_roles=frozenset({"client"}),
            now=time.time(),
        )
        while acceptor.state is not State.READY:
            acceptor.receive_data(await reader.read(65536), time.time())
            if acceptor.state is State.READY:
                writer.write(acceptor.data_to_send() + acceptor.send(WorkerLoad(1, 2), time.time()))
            else:
                writer.write(acceptor.data_to_send())
        await done.wait()
        writer.close()

    server = await asyncio.start_server(
        accept, "127.0.0.1", 0, ssl=server_ssl_context(cert_file, key_file)
    )
    received: list[Message] = []

    async def collect(_: Channel, message: Message) -> None:
        received.append(message)

    try:
        async with asyncio.timeout(5):
            channel = await connect(
                "127.0.0.1",
                server.sockets[0].getsockname()[1],
                local=make_node("client", now=time.time()).local,
                policy=open_policy(),
                accept_roles=frozenset({"proxy"}),
            )
            task = asyncio.create_task(channel.run(collect))
            try:
                await until(lambda: bool(received), 1)
            finally:
                done.set()
                await channel.close()
                await task
        assert received == [WorkerLoad(1, 2)]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_second_stream_under_a_live_id_is_refused_and_the_first_keeps_its_answer(
    tmp_path: Path,
) -> None:
    """Issue 16, item 2: opening a request id already open must not replace its stream
    (the first caller would wait for an answer that goes nowhere)."""

    async def answer(channel: Channel, message: Request) -> None:
        await answer_with_parts(channel, message, 3, 8)

    async with asyncio.timeout(5), proxy_and_client(tmp_path, answer) as (_, client):
        first = client.channel.request(request("same"))
        with pytest.raises(LocalProtocolError, match="already open"):
            client.channel.request(request("same"))
        assert [item.index async for item in first] == [0, 1, 2, 3]


async def test_closing_while_the_peer_still_sends_returns(tmp_path: Path) -> None:
    """Closing sends TLS close_notify while the peer's parts keep coming: OpenSSL fails the
    shutdown (application data after close notify), and closing still returns."""

    async def answer(channel: Channel, message: Request) -> None:
        with contextlib.suppress(ConnectionClosed):
            for index in range(100_000):
                await channel.send(AnswerPart(message.request_id, index, b"x" * 1024))

    async with asyncio.timeout(10), proxy_and_client(tmp_path, answer) as (_, client):
        stream = client.channel.request(request("r1"))
        await anext(stream)
        await client.channel.close()
        assert client.channel.closed
