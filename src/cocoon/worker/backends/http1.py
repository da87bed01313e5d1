"""Keep-alive HTTP/1.1 client connections to one origin, on llhttp's parser.

The worker's calls to its model server are its hot path. aiohttp's client costs
about 75 µs of CPU a request there; an asyncio Protocol feeding httptools
(llhttp) costs about 16. This client does only what those calls need: POST a
body to one origin and read the answer, whole or as it arrives.

Life of a connection:

- A request takes a slot (at most `max_connections` are in use), then the most
  recently used idle connection, else opens one.
- It carries one request at a time. Its answer ends with `Response.release()`,
  which puts the connection back in the pool only if the answer arrived whole
  and the server allows keep-alive, or with `Response.close()`, which aborts
  it: the model server sees the disconnect at once and stops generating.
- An idle connection leaves the pool when the server closes it, or after
  `keepalive_timeout_s` (checked on take, and by one sweep timer per pool).
- A request sent on a reused connection that the server closed before
  answering a byte is sent once more on a new connection (servers close idle
  connections on their own clock, so that race is normal; urllib3 and aiohttp
  retry the same way).

Each request has one deadline, from the moment it is asked for to the last
byte of the body: one loop timer aborts the connection then, so no read needs
its own timer. Waits that only happen when the pool is full or a connection
is new (a slot, the connect) get their own bounded wait.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cocoon.worker.backends.http1_connection import (
    ConnectError,
    Connection,
    ConnectionClosedError,
)

# Unread body bytes above which we stop reading the socket, so a slow consumer
# holds back the server through TCP instead of growing our memory. Taking the
# buffer empties it, which resumes reading.
READ_BUFFER_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Origin:
    """Where requests go: the scheme, host and port of a URL."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The Host header's value (RFC 9110 §7.2): the port unless it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def split_url(url: str) -> tuple[Origin, str]:
    """The origin of an http:// or https:// URL, and its path without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Origin(parts.scheme, parts.hostname, port), parts.path.rstrip("/")


def _encode_head(origin: Origin, headers: Mapping[str, str]) -> bytes:
    """The request head after the target, up to the Content-Length value."""
    lines = [f" HTTP/1.1\r\nHost: {origin.host_header}"]
    for name, value in headers.items():
        # A CR or LF would let a setting (an API key, say) smuggle headers.
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    return "\r\n".join(lines).encode("latin-1")


class HTTP1Client:
    """A pool of keep-alive HTTP/1.1 connections to one origin.

    Use it from one event loop; `aclose()` closes every connection (the client
    stays usable and opens new ones).
    """

    def __init__(
        self,
        origin: Origin,
        *,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        connect_timeout_s: float = 10.0,
        timeout_s: float = 300.0,
        keepalive_timeout_s: float = 60.0,
    ) -> None:
        self.origin = origin
        # Sent with every request, encoded once.
        self._head = _encode_head(origin, headers or {})
        self._ssl = ssl.create_default_context() if origin.scheme == "https" else None
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._keepalive_timeout_s = keepalive_timeout_s
        # A slot is held from a request's start until its answer is released
        # or closed, so connections in use never outnumber max_connections
        # (and idle ones are only ever former connections in use).
        self._slots = asyncio.Semaphore(max_connections)
        # Most recently used last: reusing the warmest connection lets the
        # rest reach their idle timeout and close.
        self._idle: list[Connection] = []
        self._connections: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None

    async def post(self, target: str, body: bytes) -> Response:
        """POST `body` to `target` (a path); the answer, once its head has arrived.

        Raises ConnectError, ConnectionClosedError or ProtocolError, or
        TimeoutError when a connection or the answer does not come in time.
        The caller must end the answer with `release()` or `close()`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        request = b"POST %b%b%d\r\n\r\n%b" % (target.encode("ascii"), self._head, len(body), body)
        if self._slots.locked():
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # free: returns without waiting
        try:
            connection = self._take_idle(loop.time())
            if connection is not None:
                try:
                    return await self._exchange(connection, request, deadline)
                except ConnectionClosedError:
                    if connection.answering:
                        raise
                    # The server closed it before answering a byte: it most
                    # likely never read the request. Send it on a new one.
            connection = await self._connect(deadline)
            return await self._exchange(connection, request, deadline)
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        """Close every connection; answers still being read fail."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        for connection in list(self._connections):
            self._discard(connection)

    async def _exchange(self, connection: Connection, request: bytes, deadline: float) -> Response:
        response = Response(self, connection)
        connection.send(response, request, deadline)
        try:
            await response._wait_for_head()
        except BaseException:
            # Failed, timed out or cancelled: the server must not go on
            # answering into a connection nobody reads.
            response._cancel_timer()
            self._discard(connection)
            raise
        return response

    async def _connect(self, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self._connect_timeout_s)):
                _, connection = await loop.create_connection(
                    lambda: Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl is not None else None,
                )
        except TimeoutError as exc:
            raise TimeoutError(f"no connection to {origin} in time") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS
            raise ConnectError(f"cannot connect to {origin}: {exc}") from exc
        self._connections.add(connection)
        return connection

    def _take_idle(self, now: float) -> Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not self._expired(connection, now):
                return connection
            self._discard(connection)
        return None

    def _end(self, connection: Connection, reusable: bool) -> None:
        """An answer ended: pool its connection or drop it, and free the slot."""
        self._slots.release()
        if not (reusable and connection.keep_alive and not connection.closed):
            self._discard(connection)
            return
        loop = connection.loop
        connection.idle_since = loop.time()
        # Read again so that the server closing this idle connection is seen.
        connection.resume_reading()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = loop.call_at(
                connection.idle_since + self._keepalive_timeout_s, self._close_expired
            )

    def _close_expired(self) -> None:
        """The sweep timer: close idle connections past their keep-alive time."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        live: list[Connection] = []
        for connection in self._idle:
            if self._expired(connection, now):
                self._discard(connection)
            else:
                live.append(connection)
        self._idle = live
        if live:
            self._sweep = live[0].loop.call_at(
                live[0].idle_since + self._keepalive_timeout_s, self._close_expired
            )

    def _expired(self, connection: Connection, now: float) -> bool:
        """An idle connection the server closed, or idle past its keep-alive time."""
        return connection.closed or now - connection.idle_since >= self._keepalive_timeout_s

    def _discard(self, connection: Connection) -> None:
        connection.drop()
        self._connections.discard(connection)


class Response:
    """One answer: its status and head at once, then its body as it arrives.

    Read it with `read()`, `read_some()`, `iter_chunks()` or `read_nowait()`;
    they raise ConnectionClosedError, ProtocolError or TimeoutError when the
    answer breaks off, after handing out the bytes that did arrive.
    """

    def __init__(self, client: HTTP1Client, connection: Connection) -> None:
        self.status = 0
        # Names lower-cased; a repeated header's values joined by ", ".
        self.headers: dict[bytes, bytes] = {}
        self._client = client
        self._connection = connection
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._head_done = False
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ended = False

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while part := await self.read_some():
            parts.append(part)
        return b"".join(parts)

    async def read_some(self) -> bytes:
        """The body bytes that have arrived, waiting for some; b"" at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            await self._wait()
        return self._take()

    def read_nowait(self) -> bytes:
        """The body bytes that have arrived, without waiting (b"" when none have)."""
        return self._take() if self._chunks else b""

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces in which it arrives."""
        # The answer itself, not an async generator: a consumer that stops
        # early would leave a generator for the loop to finalize in a task.
        return self

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        part = await self.read_some()
        if not part:
            raise StopAsyncIteration
        return part

    def release(self) -> None:
        """Done with this answer: its connection is reused if the answer ended cleanly."""
        if not self._ended:
            self._ended = True
            self._cancel_timer()
            self._client._end(self._connection, reusable=self._complete)

    def close(self) -> None:
        """Abandon this answer: its connection is aborted, which the server sees at once."""
        if not self._ended:
            self._ended = True
            self._cancel_timer()
            self._client._end(self._connection, reusable=False)

    # --- Fed by its connection. ---

    async def _wait_for_head(self) -> None:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    def _head_received(self, status: int) -> None:
        self.status = status
        self._head_done = True
        self._wake()

    def _body_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_BUFFER_LIMIT:
            self._connection.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._cancel_timer()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._complete or self._error is not None:
            return
        self._error = error
        self._cancel_timer()
        self._wake()

    def _set_timer(self, deadline: float) -> None:
        self._timer = self._connection.loop.call_at(deadline, self._time_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError("the answer did not end in time"))
        self._connection.drop()

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._connection.resume_reading()
        return data

    async def _wait(self) -> None:
        self._waiter = self._connection.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
