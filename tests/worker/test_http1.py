"""The HTTP/1.1 client against raw servers on 127.0.0.1 that write every byte by hand.

Each server is a connection handler: it gets the connection's reader, writer
and number (1 for the first accepted), so a test can answer, stall, misbehave
or watch for the client's disconnect exactly when it wants.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cocoon.worker.backends import http1_connection
from cocoon.worker.backends.http1 import READ_BUFFER_LIMIT, HTTP1Client, Origin, split_url
from cocoon.worker.backends.http1_connection import (
    ConnectError,
    ConnectionClosedError,
    ProtocolError,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@dataclass
class Server:
    """A running raw server."""

    origin: Origin
    accepted: int = 0


Serve = Callable[..., Awaitable[Server]]
MakeClient = Callable[..., HTTP1Client]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[None]] = set()

    async def start(handler: Handler, ssl_context: object = None) -> Server:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            info.accepted += 1
            try:
                await handler(reader, writer, info.accepted)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client went away; several tests want just that
            finally:
                writer.close()
                handlers.discard(task)

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=ssl_context)  # type: ignore[arg-type]
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        info = Server(Origin("https" if ssl_context else "http", "127.0.0.1", port))
        return info

    yield start
    for task in list(handlers):
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[HTTP1Client] = []

    def make(origin: Origin, **options: object) -> HTTP1Client:
        client = HTTP1Client(origin, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    assert match is not None, head
    return head, await reader.readexactly(int(match[1]))


def answer(body: bytes, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 %b\r\nContent-Length: %d\r\n\r\n%b" % (status.encode(), len(body), body)


async def until_disconnected(reader: asyncio.StreamReader) -> None:
    """Return once the client has closed or aborted the connection."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


def answers_then_waits(reply: Callable[[bytes], bytes], disconnected: asyncio.Event) -> Handler:
    """A server that sends `reply(body)` to one request, then waits for the client to go."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        _, body = await read_request(reader)
        writer.write(reply(body))
        await until_disconnected(reader)
        disconnected.set()

    return handler


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
    while True:
        try:
            _, body = await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(answer(body))


def test_split_url() -> None:
    assert split_url("http://127.0.0.1:8000/v1/") == (Origin("http", "127.0.0.1", 8000), "/v1")
    assert split_url("https://api.example.com") == (Origin("https", "api.example.com", 443), "")
    origin, _ = split_url("http://[::1]:81/v1")
    assert origin.host == "::1" and origin.host_header == "[::1]:81"
    assert Origin("https", "api.example.com", 443).host_header == "api.example.com"
    for bad in ("ftp://host/v1", "127.0.0.1:8000/v1", "http:///v1"):
        with pytest.raises(ValueError):
            split_url(bad)


async def test_sequential_requests_share_one_connection(
    serve: Serve, make_client: MakeClient
) -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            head, body = await read_request(reader)
            heads.append(head)
            writer.write(answer(body))

    server = await serve(handler)
    client = make_client(server.origin, headers={"Authorization": "Bearer sk-1"})
    for n in range(20):
        response = await client.post("/v1/echo", b"request %d" % n)
        assert response.status == 200
        assert response.headers[b"content-length"] == b"%d" % len(b"request %d" % n)
        assert await response.read() == b"request %d" % n
        response.release()
    assert server.accepted == 1
    port = server.origin.port
    assert heads[0] == (
        b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Authorization: Bearer sk-1\r\nContent-Length: 9\r\n\r\n" % port
    )


async def test_the_connection_limit_holds_under_concurrency(
    serve: Serve, make_client: MakeClient
) -> None:
    limit = 3
    waiting = 0
    all_busy = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        nonlocal waiting
        while True:
            _, body = await read_request(reader)
            # Hold the first answers until `limit` requests are in at once.
            waiting += 1
            if waiting >= limit:
                all_busy.set()
            await all_busy.wait()
            writer.write(answer(body))

    server = await serve(handler)
    client = make_client(server.origin, max_connections=limit)

    async def one(n: int) -> bytes:
        response = await client.post("/", b"%d" % n)
        try:
            return await response.read()
        finally:
            response.release()

    async with asyncio.timeout(5):
        bodies = await asyncio.gather(*(one(n) for n in range(4 * limit)))
    assert bodies == [b"%d" % n for n in range(4 * limit)]
    assert server.accepted == limit


@pytest.mark.parametrize(
    ("answer_bytes", "server_closes"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", False),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            False,
        ),
        # No length: the body ends when the server closes the connection.
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world", True),
        # An interim answer comes before the real one.
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + answer(b"hello world"), False),
    ],
    ids=["content-length", "chunked", "until-close", "interim-103"],
)
async def test_each_body_framing_reads_whole(
    serve: Serve, make_client: MakeClient, answer_bytes: bytes, server_closes: bool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_request(reader)
            writer.write(answer_bytes)
            if server_closes:
                return

    server = await serve(handler)
    client = make_client(server.origin)
    for _ in range(2):
        response = await client.post("/", b"{}")
        assert (response.status, await response.read()) == (200, b"hello world")
        assert b"link" not in response.headers
        response.release()
    # A body that ended with its connection leaves nothing to reuse.
    assert server.accepted == (2 if server_closes else 1)


async def test_the_body_arrives_piece_by_piece(serve: Serve, make_client: MakeClient) -> None:
    took_first = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await took_first.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    server = await serve(handler)
    client = make_client(server.origin)
    response = await client.post("/", b"{}")
    async with asyncio.timeout(5):
        assert await response.read_some() == b"first"
        assert response.read_nowait() == b""
        took_first.set()
        assert [chunk async for chunk in response.iter_chunks()] == [b"second"]
    assert response.read_nowait() == b""
    response.release()


async def test_the_chunks_of_one_read_arrive_as_one_piece(
    serve: Serve, make_client: MakeClient
) -> None:
    """A streamed answer's server sends a chunk per token: what one read brings is
    handed on joined, not chunk by chunk, and before the end or a fault that follows."""
    tokens = [f"token {i} ".encode() for i in range(64)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(t), t) for t in tokens)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        writer.write(head + chunked + b"0\r\n\r\n")  # one write: one read, all of it

    server = await serve(handler)
    client = make_client(server.origin)
    response = await client.post("/", b"{}")
    async with asyncio.timeout(5):
        pieces = [piece async for piece in response.iter_chunks()]
    response.release()
    assert b"".join(pieces) == b"".join(tokens)
    assert len(pieces) < len(tokens) / 4


async def test_the_bytes_before_a_malformed_chunk_are_read_first(
    serve: Serve, make_client: MakeClient
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nfirst\r\n6\r\nsecond\r\nzz\r\nbad\r\n"
        )
        await reader.read()  # until the client drops the connection

    server = await serve(handler)
    client = make_client(server.origin)
    response = await client.post("/", b"{}")
    async with asyncio.timeout(5):
        assert await response.read_some() == b"firstsecond"
        with pytest.raises(ProtocolError):
            await response.read_some()
    response.close()


async def test_a_connection_the_server_closed_while_idle_is_not_used(
    serve: Serve, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        received.append(body)
        writer.write(answer(body))
        if n == 1:
            return  # closes this connection once idle
        await echo_forever(reader, writer, n)

    lost = asyncio.Event()
    connection_lost = http1_connection.Connection.connection_lost

    def noting_loss(connection: http1_connection.Connection, exc: Exception | None) -> None:
        connection_lost(connection, exc)
        lost.set()

    monkeypatch.setattr(http1_connection.Connection, "connection_lost", noting_loss)
    server = await serve(handler)
    client = make_client(server.origin)
    response = await client.post("/", b"one")
    assert await response.read() == b"one"
    response.release()
    async with asyncio.timeout(5):
        await lost.wait()
    response = await client.post("/", b"two")
    assert await response.read() == b"two"
    response.release()
    # Sent once: the closed connection was left out, not tried and retried.
    assert received == [b"one", b"two"]
    assert server.accepted == 2


async def test_a_request_the_server_dropped_unanswered_is_sent_again(
    serve: Serve, make_client: MakeClient
) -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        received.append(body)
        writer.write(answer(body))
        if n == 1:
            # The server's idle timeout strikes as the next request arrives.
            _, body = await read_request(reader)
            received.append(body)
            return
        await echo_forever(reader, writer, n)

    server = await serve(handler)
    client = make_client(server.origin)
    for body in (b"one", b"two"):
        response = await client.post("/", body)
        assert await response.read() == body
        response.release()
    assert received == [b"one", b"two", b"two"]
    assert server.accepted == 2


async def test_a_request_whose_answer_had_begun_is_not_sent_again(
    serve: Serve, make_client: MakeClient
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        writer.write(answer(body))
        await read_request(reader)
        writer.write(b"HTTP/1.1 200")

    server = await serve(handler)
    client = make_client(server.origin)
    response = await client.post("/", b"one")
    assert await response.read() == b"one"
    response.release()
    with pytest.raises(ConnectionClosedError):
        await client.post("/", b"two")
    assert server.accepted == 1


@pytest.mark.parametrize(
    "answer_bytes",
    [
        b"HTTP/1.1 two hundred OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
    ],
    ids=["bad-status", "bad-chunk-size"],
)
async def test_a_malformed_answer_is_a_protocol_error_and_drops_the_connection(
    serve: Serve, make_client: MakeClient, answer_bytes: bytes
) -> None:
    disconnected = asyncio.Event()

    server = await serve(answers_then_waits(lambda _: answer_bytes, disconnected))
    client = make_client(server.origin)
    with pytest.raises(ProtocolError):
        response = await client.post("/", b"{}")
        try:
            await response.read()
        finally:
            response.close()
    async with asyncio.timeout(5):
        await disconnected.wait()


@pytest.mark.parametrize("sends", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"])
async def test_the_total_timeout_raises_timeout_error_and_closes_the_connection(
    serve: Serve, make_client: MakeClient, sends: bytes
) -> None:
    disconnected = asyncio.Event()

    server = await serve(answers_then_waits(lambda _: sends, disconnected))
    client = make_client(server.origin, timeout_s=0.2)
    with pytest.raises(TimeoutError):
        response = await client.post("/", b"{}")
        try:
            assert await response.read_some() == b"half"
            await response.read()
        finally:
            response.close()
    async with asyncio.timeout(5):
        await disconnected.wait()


async def test_closing_mid_body_disconnects_at_once(serve: Serve, make_client: MakeClient) -> None:
    disconnected = asyncio.Event()

    server = await serve(
        answers_then_waits(
            lambda _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntoken\r\n",
            disconnected,
        )
    )
    client = make_client(server.origin)
    response = await client.post("/", b"{}")
    assert await response.read_some() == b"token"
    response.close()
    async with asyncio.timeout(5):
        await disconnected.wait()
    # The slot came back: the next request gets a new connection.
    response = await client.post("/", b"{}")
    response.close()
    assert server.accepted == 2


async def test_a_slow_consumer_pauses_reading_and_still_gets_every_byte(
    serve: Serve, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(4 * 1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(answer(body))
        await writer.drain()

    paused = asyncio.Event()
    pause_reading = http1_connection.Connection.pause_reading

    def noting_pause(connection: http1_connection.Connection) -> None:
        pause_reading(connection)
        paused.set()

    monkeypatch.setattr(http1_connection.Connection, "pause_reading", noting_pause)
    server = await serve(handler)
    client = make_client(server.origin)
    response = await client.post("/", b"{}")
    async with asyncio.timeout(5):
        await paused.wait()
        # Held back: at most the limit plus the one read that crossed it.
        first = response.read_nowait()
        assert READ_BUFFER_LIMIT < len(first) <= 2 * READ_BUFFER_LIMIT
        rest = await response.read()
    assert first + rest == body
    response.release()


async def test_idle_connections_close_after_the_keepalive_timeout(
    serve: Serve, make_client: MakeClient
) -> None:
    first_closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        writer.write(answer(body))
        await until_disconnected(reader)
        if n == 1:
            first_closed.set()

    server = await serve(handler)
    client = make_client(server.origin, keepalive_timeout_s=0.0)
    response = await client.post("/", b"one")
    assert await response.read() == b"one"
    response.release()
    async with asyncio.timeout(5):
        await first_closed.wait()
    response = await client.post("/", b"two")
    assert await response.read() == b"two"
    response.release()
    assert server.accepted == 2


async def test_aclose_closes_pooled_connections(serve: Serve, make_client: MakeClient) -> None:
    disconnected = asyncio.Event()

    server = await serve(answers_then_waits(answer, disconnected))
    client = make_client(server.origin)
    response = await client.post("/", b"one")
    await response.read()
    response.release()
    await client.aclose()
    async with asyncio.timeout(5):
        await disconnected.wait()


async def test_connection_refused_is_a_connect_error(make_client: MakeClient) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = make_client(Origin("http", "127.0.0.1", port))
    with pytest.raises(ConnectError):
        await client.post("/", b"{}")


async def test_https_verifies_the_server_certificate(
    serve: Serve, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    cert_file, key_file = _self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    server = await serve(echo_forever, server_context)

    # Not trusted yet: the handshake fails, which is a failure to connect.
    with pytest.raises(ConnectError):
        await make_client(server.origin).post("/", b"{}")

    # OpenSSL reads SSL_CERT_FILE when ssl.create_default_context() loads its roots.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    client = make_client(server.origin)
    response = await client.post("/", b"sealed")
    assert await response.read() == b"sealed"
    response.release()


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file
