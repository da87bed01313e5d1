"""What a peer that has not authenticated may cost an acceptor (issue 16, item 3).

Sans-IO first: the acceptor's frame limit before and after the handshake, and
refusals that never repeat what the peer sent. Then over real TLS on
127.0.0.1: handshakes bounded in number and time, and a refused peer's TLS
buffers freed by reference counting at once (no cycle waiting for a full GC;
`python -m cocoon.bench.preauth` measures the RSS this keeps flat).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import struct
import time
from asyncio.sslproto import SSLProtocol
from pathlib import Path

import msgspec
import pytest

from cocoon.tee import tls_files
from cocoon.wire import endpoints, transport
from cocoon.wire.endpoints import serve, server_ssl_context
from cocoon.wire.errors import FrameTooLarge, PeerError, ProtocolError
from cocoon.wire.framing import decode_message, encode_frame
from cocoon.wire.handshake import HANDSHAKE_MAX_FRAME, MAX_REASON
from cocoon.wire.messages import Error, Hello
from harness.network import until

from .conftest import NETWORK, NOW, client_and_server, handshake, make_node, open_policy, request


def test_an_acceptor_refuses_a_big_frame_from_its_header_before_the_handshake() -> None:
    _, server = client_and_server(max_frame=16 * 1024 * 1024)
    header = struct.pack(">I", HANDSHAKE_MAX_FRAME + 1)
    with pytest.raises(FrameTooLarge):
        server.receive_data(header, NOW)
    (error,) = _errors(server.data_to_send())
    assert error.code == "frame_too_large"


def test_after_the_handshake_the_connections_own_limit_applies() -> None:
    client, server = client_and_server(max_frame=4 * 1024 * 1024)
    handshake(client, server)
    big = request("r1", sealed=b"x" * (2 * HANDSHAKE_MAX_FRAME))
    (received,) = server.receive_data(client.send(big, NOW), NOW)
    assert received == big


def test_a_hello_stuffed_with_a_long_role_is_refused_without_repeating_it() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    (hello,) = _messages(client.data_to_send())
    assert isinstance(hello, Hello)
    stuffed = "role-" + "A" * 40_000
    lying = Hello(hello.major, hello.minor, stuffed, NETWORK, hello.nonce, hello.certificate)
    with pytest.raises(ProtocolError):
        server.receive_data(encode_frame(lying), NOW)
    (error,) = _errors(server.data_to_send())
    assert "AAAA" not in error.message and len(error.message) <= MAX_REASON
    with pytest.raises(PeerError) as failed:
        client.receive_data(encode_frame(error), NOW)
    assert failed.value.code == "unauthorized"


def test_a_malformed_frame_with_a_long_field_gives_a_short_reason() -> None:
    _, server = client_and_server()
    # A frame whose tag is 60 KB of text: msgspec's error would quote it.
    payload = msgspec.msgpack.encode(["x" * 60_000, 1])
    with pytest.raises(ProtocolError):
        server.receive_data(struct.pack(">I", len(payload)) + payload, NOW)
    (error,) = _errors(server.data_to_send())
    assert len(error.message) <= MAX_REASON


def _messages(data: bytes) -> list[object]:
    out = []
    while data:
        (size,) = struct.unpack(">I", data[:4])
        out.append(decode_message(data[4 : 4 + size]))
        data = data[4 + size :]
    return out


def _errors(data: bytes) -> list[Error]:
    errors = [m for m in _messages(data) if isinstance(m, Error)]
    assert errors
    return errors


# -- over real TLS -------------------------------------------------------------


class Acceptor:
    def __init__(self, slots: int = endpoints.MAX_HANDSHAKES) -> None:
        self.refused: list[str] = []
        self.slots = endpoints.HandshakeSlots(slots)
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, tmp_path: Path) -> None:
        node = make_node("proxy", now=time.time())
        cert_file, key_file = tls_files(node.identity.signing_key, node.local.certificate, tmp_path)

        async def on_channel(channel: transport.Channel) -> None:
            await channel.close()

        self.server = await serve(
            "127.0.0.1",
            0,
            local=lambda: node.local,
            policy=open_policy(),
            accept_roles=frozenset({"client"}),
            ssl_context=server_ssl_context(cert_file, key_file),
            on_channel=on_channel,
            on_refused=self.refused.append,
            slots=self.slots,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def _tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(5):
        return await asyncio.open_connection("127.0.0.1", port, ssl=_tls())


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def test_handshakes_are_bounded_in_number_and_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "HANDSHAKE_TIMEOUT", 0.5)
    acceptor = Acceptor(slots=2)
    await acceptor.start(tmp_path)
    try:
        # Two silent peers take both handshake places; a third is turned away at once.
        held = [await _open(acceptor.port) for _ in range(2)]
        await until(lambda: acceptor.slots.running == 2)
        reader, writer = await _open(acceptor.port)
        await _until_closed(reader)
        writer.close()
        assert acceptor.refused == ["busy"]
        # The silent two are cut when their time is up.
        started = time.monotonic()
        for reader, writer in held:
            await _until_closed(reader)
            writer.close()
        assert time.monotonic() - started < 3
        assert sorted(acceptor.refused) == ["busy", "handshake_failed", "handshake_failed"]
    finally:
        await acceptor.stop()


async def test_a_refused_peers_tls_buffers_are_freed_at_once(tmp_path: Path) -> None:
    """No reference cycle keeps a refused connection (and its TLS buffers) alive until
    a full garbage collection: with the collector off, none is left."""
    acceptor = Acceptor()
    await acceptor.start(tmp_path)
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            reader, writer = await _open(acceptor.port)
            writer.write(struct.pack(">I", 16 * 1024 * 1024) + b"\x00" * 100_000)
            answer = await _until_closed(reader)
            writer.transport.abort()
            assert b"frame_too_large" in answer or answer == b""
        await until(lambda: len(acceptor.refused) == 5)
        del reader, writer
        await asyncio.sleep(0)
        left = [o for o in gc.get_objects() if isinstance(o, SSLProtocol)]
        # The listening side keeps none; the test's own client side may hold one.
        server_side = [p for p in left if p._server_side]  # type: ignore[attr-defined]
        assert server_side == []
    finally:
        gc.enable()
        await acceptor.stop()
