"""Where channels begin: TLS contexts, the handshake over a fresh stream, `connect` and `serve`.

Before a peer is authenticated it may hold little and not for long: the
handshake has its own frame limit, a bounded number run at once, and each has
a deadline (issue 16)."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..tee.policy import PeerPolicy
from .connection import Connection
from .errors import ConnectionClosed, ProtocolError, WireError
from .framing import DEFAULT_MAX_FRAME
from .handshake import HANDSHAKE_MAX_FRAME, Event, LocalIdentity, Ready, short_reason
from .transport import READ_SIZE, Channel

log = logging.getLogger(__name__)

# asyncio's TLS layer gives every connection a read buffer of 256 KiB, written
# through at its creation (`SSLProtocol.max_size`): an idle authenticated
# connection cost the proxy 300 KiB of RSS, 3 GB for 10,000. A TLS record is at
# most 16 KiB, so 32 KiB still takes two per read: 68 KiB a connection now, and
# no change in streamed requests per second that the noise of 2 shared cores
# shows (`python -m cocoon.bench.preauth --clients 1000`).
TLS_READ_BUFFER = 32 * 1024
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
HANDSHAKE_TIMEOUT = 10.0


# An acceptor runs at most this many handshakes at once (TLS done, the peer
# not yet authenticated); more are closed at once and counted as `busy`.
# With the handshake frame limit this bounds what strangers can hold.
MAX_HANDSHAKES = 128


# An accepted connection's read buffer: asyncio stops reading the socket past
# twice this, so a peer that is not yet read from holds at most that much.
ACCEPT_READ_LIMIT = 64 * 1024


class HandshakeSlots:
    """The handshakes an acceptor runs at once (TLS done, the peer not yet
    authenticated): at most `limit`; past it a connection is closed at once."""

    def __init__(self, limit: int = MAX_HANDSHAKES) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running -= 1


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.3 only, presenting our RA-TLS certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file, key_file)
    return context


def client_ssl_context() -> ssl.SSLContext:
    """TLS 1.3 only; the peer's self-signed certificate is checked after the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # Verification happens in Connection, against attestation evidence, not a CA.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    connection: Connection,
    read_size: int = READ_SIZE,
) -> tuple[Ready, list[Event]]:
    """Run the handshake; also return frames that arrived in the same read as its end."""
    while True:
        pending = connection.data_to_send()
        if pending:
            writer.write(pending)
            await writer.drain()
        data = await reader.read(read_size)
        if not data:
            raise ConnectionClosed("peer closed the connection during the handshake")
        try:
            events = connection.receive_data(data, time.time())
        except ProtocolError:
            writer.write(connection.data_to_send())
            await writer.drain()
            raise
        for index, event in enumerate(events):
            if isinstance(event, Ready):
                pending = connection.data_to_send()
                if pending:
                    writer.write(pending)
                    await writer.drain()
                rest: list[Event] = [e for e in events[index + 1 :] if not isinstance(e, Ready)]
                return event, rest


async def connect(
    host: str,
    port: int,
    *,
    local: LocalIdentity,
    policy: PeerPolicy,
    accept_roles: frozenset[str],
    max_frame: int = DEFAULT_MAX_FRAME,
    heartbeat_interval: float = 10.0,
    heartbeat_timeout: float = 30.0,
) -> Channel:
    """Open a TLS connection and run the handshake as the connecting side."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=client_ssl_context(), limit=READ_SIZE),
        HANDSHAKE_TIMEOUT,
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not certificate:
            raise ConnectionClosed("the peer presented no certificate")
        connection = Connection(
            connector=True,
            local=local,
            policy=policy,
            accept_roles=accept_roles,
            now=time.time(),
            peer_tls_certificate=certificate,
            max_frame=max_frame,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
        )
        connection.initiate(time.time())
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            ready, early = await _handshake(reader, writer, connection)
    except BaseException:
        writer.close()
        raise
    return Channel(reader, writer, connection, ready, early)


async def serve(
    host: str,
    port: int,
    *,
    local: Callable[[], LocalIdentity],
    policy: PeerPolicy,
    accept_roles: frozenset[str],
    ssl_context: ssl.SSLContext,
    on_channel: Callable[[Channel], Awaitable[None]],
    max_frame: int = DEFAULT_MAX_FRAME,
    heartbeat_interval: float = 10.0,
    heartbeat_timeout: float = 30.0,
    on_refused: Callable[[str], None] | None = None,
    slots: HandshakeSlots | None = None,
) -> asyncio.Server:
    """Accept connections; each that completes the handshake is handed to `on_channel`.

    Before a peer is authenticated it costs little and not for long (issue 16):
    frames up to HANDSHAKE_MAX_FRAME, reads of at most that, MAX_HANDSHAKES at
    once, HANDSHAKE_TIMEOUT each (the TLS handshake included), and refusal
    reasons of at most MAX_REASON characters that never repeat what it sent."""
    handshakes = slots if slots is not None else HandshakeSlots()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not handshakes.take():
            if on_refused is not None:
                on_refused("busy")
            writer.transport.abort()
            return
        try:
            accepted = await _accept(reader, writer)
        finally:
            handshakes.give_back()
        if accepted is not None:
            await on_channel(accepted)

    async def _accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Channel | None:
        connection = Connection(
            connector=False,
            local=local(),
            policy=policy,
            accept_roles=accept_roles,
            now=time.time(),
            max_frame=max_frame,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
        )
        peer = writer.get_extra_info("peername")
        try:
            # A timeout scope, not wait_for: wait_for's inner task and the refusal's
            # traceback hold each other (and the TLS buffers) until a full GC.
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                ready, early = await _handshake(reader, writer, connection, HANDSHAKE_MAX_FRAME)
        except (WireError, TimeoutError, ConnectionError, OSError, ssl.SSLError) as exc:
            reason = (
                getattr(exc, "reason", None) or getattr(exc, "code", None) or "handshake_failed"
            )
            log.warning("handshake with %s refused (%s): %s", peer, reason, short_reason(exc))
            if on_refused is not None:
                on_refused(str(reason)[:64])
            # Not a TLS shutdown: that would keep reading (and buffering) what a
            # refused peer still sends, for up to 30 s. The Error frame has been
            # handed to the socket; a peer that waits for it gets it.
            writer.transport.abort()
            return None
        return Channel(reader, writer, connection, ready, early)

    return await asyncio.start_server(
        accept,
        host,
        port,
        ssl=ssl_context,
        limit=ACCEPT_READ_LIMIT,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
    )
