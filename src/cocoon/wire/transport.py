"""asyncio glue: moves bytes between TLS streams and sans-IO `Connection`s.

Nothing here decides anything about the protocol; it reads, feeds the
connection, writes what the connection says, and hands messages to the role
that owns the channel. Backpressure: each request's answer stream is a
bounded buffer; when it is full the read loop stops reading the socket, so a
slow consumer slows its sender through TCP instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from ..tee.certs import PeerCertificate
from ..tee.evidence import Verdict
from .connection import Connection
from .errors import ConnectionClosed, LocalProtocolError, PeerError, ProtocolError, WireError
from .handshake import Event, PeerRenewed, Ready, short_reason
from .messages import AnswerEnd, AnswerPart, Cancel, Error, Message, Renew, Request

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
# Frames queued within one loop iteration leave in one write; past this many
# bytes they leave at once, and past this many unsent bytes senders wait.
FLUSH_BYTES = 64 * 1024
# Frames buffered per answer stream before the read loop stops reading.
STREAM_BUFFER = 256

Handler = Callable[["Channel", Message], Awaitable[None]]


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
        self.peer_minor = ready.minor  # what the peer's messages may carry
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
            # Python 3.11.2's TLS transport raises AttributeError from `abort` once its
            # connection is gone, as after a peer's data behind its close_notify (later
            # 3.11 releases check first): nothing is left to abort then.
            with contextlib.suppress(AttributeError):
                self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection after what was sent; open answer streams fail."""
        self._flush()
        self._mark_closed(ConnectionClosed("closed locally"))
        await self._close_transport()

    async def wait_closed(self) -> None:
        await self._closed.wait()
