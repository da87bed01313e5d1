"""asyncio glue: moves bytes between TLS streams and sans-IO `Connection`s.

Nothing here decides anything about the protocol; it reads, feeds the
connection, writes what the connection says, and hands messages to the role
that owns the channel. Backpressure: each request's answer stream is a
bounded buffer; when it is full the read loop stops reading the socket, so a
slow consumer slows its sender through TCP instead of growing memory.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ..tee.certs import PeerCertificate
from ..tee.evidence import Verdict
from ..tee.policy import PeerPolicy
from .connection import (
    HANDSHAKE_MAX_FRAME,
    Connection,
    Event,
    LocalIdentity,
    PeerRenewed,
    Ready,
    short_reason,
)
from .errors import ConnectionClosed, LocalProtocolError, PeerError, ProtocolError, WireError
from .framing import DEFAULT_MAX_FRAME
from .messages import AnswerEnd, AnswerPart, Cancel, Error, Message, Renew, Request

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
# asyncio's TLS layer gives every connection a read buffer of 256 KiB, written
# through at its creation (`SSLProtocol.max_size`): an idle authenticated
# connection cost the proxy 300 KiB of RSS, 3 GB for 10,000. A TLS record is at
# most 16 KiB, so 32 KiB still takes two per read: 68 KiB a connection now, and
# no change in streamed requests per second that the noise of 2 shared cores
# shows (`python -m cocoon.bench.preauth --clients 1000`).
TLS_READ_BUFFER = 32 * 1024
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
# Frames queued within one loop iteration leave in one write; past this many
# bytes they leave at once, and past this many unsent bytes senders wait.
FLUSH_BYTES = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0
# An acceptor runs at most this many handshakes at once (TLS done, the peer
# not yet authenticated); more are closed at once and counted as `busy`.
# With the handshake frame limit this bounds what strangers can hold.
MAX_HANDSHAKES = 128
# An accepted connection's read buffer: asyncio stops reading the socket past
# twice this, so a peer that is not yet read from holds at most that much.
ACCEPT_READ_LIMIT = 64 * 1024
# Frames buffered per answer stream before the read loop stops reading.
STREAM_BUFFER = 256

Handler = Callable[["Channel", Message], Awaitable[None]]


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


class AnswerStream:
    """The answer frames of one request, as an async iterator ending after AnswerEnd."""

    def __init__(self, channel: Channel, request_id: str, limit: int = STREAM_BUFFER) -> None:
        self.channel = channel
        self.request_id = request_id
        self._limit = limit
        self._items: deque[AnswerPart | AnswerEnd] = deque()
        self._error: BaseException | None = None
        self._done = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    async def put(self, message: AnswerPart | AnswerEnd) -> None:
        while len(self._items) >= self._limit and self._error is None:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(message)
        self._readable.set()

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._readable.set()
        self._writable.set()

    def __aiter__(self) -> AsyncIterator[AnswerPart | AnswerEnd]:
        return self

    async def __anext__(self) -> AnswerPart | AnswerEnd:
        while not self._items:
            if self._done:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if len(self._items) < self._limit:
            self._writable.set()
        if isinstance(item, AnswerEnd):
            self._done = True
            self.channel._streams.pop(self.request_id, None)
        return item

    async def cancel(self) -> None:
        """Tell the peer we no longer want this answer."""
        if self._done or self._error is not None:
            return
        self._done = True
        self.channel._streams.pop(self.request_id, None)
        with contextlib.suppress(WireError):
            await self.channel.send(Cancel(self.request_id))


class Channel:
    """An established, authenticated Cocoon connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: Connection,
        ready: Ready,
        early: list[Event] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.connection = connection
        self.peer: PeerCertificate = ready.peer
        self.verdict: Verdict = ready.verdict
        self.peer_role = ready.peer.claims.role
        self._streams: dict[str, AnswerStream] = {}
        # Frames that arrived in the same read as the handshake's last message.
        self._early: list[Event] = early or []
        self._closed = asyncio.Event()
        self.close_reason: BaseException | None = None
        self._write_buffer = bytearray()
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        peername = writer.get_extra_info("peername")
        self.peer_address = f"{peername[0]}:{peername[1]}" if peername else "?"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def key_id(self) -> str:
        return self.peer.key_id

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send one message; waits while the peer is not reading (backpressure)."""
        self.send_nowait(message)
        await self.drain()

    def send_nowait(self, message: Message) -> None:
        """Queue one message for the next flush; callers must `drain` now and then."""
        if self._closed.is_set():
            raise ConnectionClosed(f"connection to {self.peer_address} is closed")
        data = self.connection.send(message, time.time())
        if data:
            self._write_buffer += data
            if not self._flush_scheduled:
                # Frames queued in the same loop iteration leave in one write,
                # so one TLS record carries many small answer chunks.
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._write_buffer and not self.writer.transport.is_closing():
            self.writer.write(bytes(self._write_buffer))
        self._write_buffer.clear()

    async def drain(self) -> None:
        """Wait while too much is buffered for the peer; cheap when it keeps up."""
        if self._closed.is_set():
            raise ConnectionClosed(f"connection to {self.peer_address} is closed")
        if len(self._write_buffer) >= FLUSH_BYTES:
            self._flush()
        if self.writer.transport.get_write_buffer_size() >= FLUSH_BYTES:
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self._mark_closed(ConnectionClosed(f"connection to {self.peer_address} lost"))
                raise ConnectionClosed(str(exc)) from exc
            if self._closed.is_set():
                raise ConnectionClosed(f"connection to {self.peer_address} is closed")

    async def renew(self, certificate: bytes) -> None:
        """Show the peer our fresh certificate (same key) on this long-lived connection."""
        with contextlib.suppress(WireError):
            await self.send(Renew(certificate))

    def request(self, message: Request) -> AnswerStream:
        """Send a request; its answer frames arrive on the returned stream."""
        if message.request_id in self._streams:
            # Checked before anything changes: a second stream under a live id would
            # replace the first, whose answer would then reach nobody.
            raise LocalProtocolError(
                f"request {message.request_id} is already open on this connection",
                "duplicate_request_id",
            )
        stream = AnswerStream(self, message.request_id)
        self._streams[message.request_id] = stream
        try:
            self.send_nowait(message)
        except BaseException:
            self._streams.pop(message.request_id, None)
            raise
        return stream

    # -- receiving -----------------------------------------------------------

    async def run(self, handler: Handler) -> None:
        """Read until the connection ends; messages not belonging to a stream go to `handler`."""
        timer = asyncio.create_task(self._heartbeats())
        try:
            await self._read_loop(handler)
        except (ProtocolError, PeerError) as exc:
            log.warning(
                "connection to %s %s failed: %s",
                self.peer_role,
                self.peer_address,
                short_reason(exc),
            )
            self._write_raw(self.connection.data_to_send())
            self._mark_closed(exc)
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            self._mark_closed(ConnectionClosed(f"connection to {self.peer_address} lost: {exc}"))
        finally:
            timer.cancel()
            self._mark_closed(ConnectionClosed(f"connection to {self.peer_address} closed"))
            await self._close_transport()

    async def _read_loop(self, handler: Handler) -> None:
        connection = self.connection
        streams = self._streams
        reader = self.reader
        events: list[Event] = list(self._early)
        self._early = []
        while True:
            for event in events:
                if isinstance(event, AnswerPart | AnswerEnd):
                    stream = streams.get(event.request_id)
                    if stream is not None:
                        await stream.put(event)
                elif isinstance(event, Error) and event.request_id in streams:
                    streams.pop(event.request_id).fail(
                        PeerError(event.code, event.message, event.retryable)
                    )
                elif isinstance(event, PeerRenewed):
                    self.peer, self.verdict = event.peer, event.verdict
                elif isinstance(event, Ready):
                    continue
                else:
                    await handler(self, event)
            data = await reader.read(READ_SIZE)
            if not data:
                return
            events = connection.receive_data(data, time.time())
            pending = connection.data_to_send()
            if pending:
                self._write_raw(pending)

    async def _heartbeats(self) -> None:
        connection = self.connection
        try:
            while not self._closed.is_set():
                await asyncio.sleep(max(0.05, connection.next_timer() - time.time()))
                connection.handle_timer(time.time())
                pending = connection.data_to_send()
                if pending:
                    self._write_raw(pending)
        except ProtocolError as exc:
            log.warning("peer %s %s: %s", self.peer_role, self.peer_address, exc)
            self._mark_closed(exc)
            self.writer.transport.abort()

    def _write_raw(self, data: bytes) -> None:
        if not self.writer.transport.is_closing():
            self._flush()
            self.writer.write(data)

    def _mark_closed(self, reason: BaseException) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        for stream in list(self._streams.values()):
            stream.fail(ConnectionClosed(f"connection to {self.peer_address} lost: {reason}"))
        self._streams.clear()

    async def _close_transport(self) -> None:
        self._flush()
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection after what was sent; open answer streams fail."""
        self._flush()
        self._mark_closed(ConnectionClosed("closed locally"))
        await self._close_transport()

    async def wait_closed(self) -> None:
        await self._closed.wait()


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


def _refusal_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "code", None)
    return str(reason) if reason else type(exc).__name__
