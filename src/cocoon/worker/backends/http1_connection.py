"""One keep-alive HTTP/1.1 connection of the worker's model-server client
(`http1`): it feeds what arrives to llhttp, and llhttp's events to the answer
in progress; and the errors that client raises.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools


class Response(Protocol):
    """The answer in progress on a connection (`http1.Response`), as llhttp's events
    reach it."""

    status: int
    headers: dict[bytes, bytes]
    _head_done: bool

    def _head_received(self, status: int) -> None: ...

    def _body_received(self, data: bytes) -> None: ...

    def _finish(self) -> None: ...

    def _fail(self, error: BaseException) -> None: ...

    def _set_timer(self, deadline: float) -> None: ...


class HTTPClientError(Exception):
    """The server could not be reached, or its answer did not arrive whole."""


class ConnectError(HTTPClientError):
    """No connection to the server could be opened."""


class ConnectionClosedError(HTTPClientError):
    """The connection closed before the server's answer ended."""


class ProtocolError(HTTPClientError):
    """The server's answer is not valid HTTP/1.1; its connection was dropped."""


class Connection(asyncio.Protocol):
    """One connection: feeds what arrives to llhttp, and llhttp's events to its answer."""

    transport: asyncio.Transport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._parser = httptools.HttpResponseParser(self)
        # The answer being received; None between answers.
        self.response: Response | None = None
        # The server started answering the current request (a byte arrived).
        self.answering = False
        # The last answer allows another request on this connection.
        self.keep_alive = False
        self.closed = False
        self.idle_since = 0.0
        self._paused = False
        # Body pieces of the read being parsed, handed to the answer in one piece
        # once the read is parsed: a streamed answer's server sends a chunk per token,
        # and llhttp calls `on_body` for each (64 calls a 64-token answer, where the
        # worker reads it in about six).
        self._body: list[bytes] = []

    def send(self, response: Response, request: bytes, deadline: float) -> None:
        self.response = response
        self.answering = False
        self.keep_alive = False
        if self.closed:
            # Closed by the server between the connect and now: nothing will
            # arrive to end the wait otherwise.
            response._fail(ConnectionClosedError("the server closed the connection at once"))
            return
        self.transport.write(request)
        response._set_timer(deadline)

    def drop(self) -> None:
        """Abort the connection (no graceful close: the server must see it now)."""
        response, self.response = self.response, None
        if response is not None:
            response._fail(ConnectionClosedError("the connection was closed"))
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._hand_on_body()  # what arrived whole before the fault is read first
            if self.response is not None:
                self.response._fail(ProtocolError(f"malformed answer from the server: {exc}"))
            self.drop()
            return
        self._hand_on_body()

    def _hand_on_body(self) -> None:
        body = self._body
        if body:
            self._body = []
            response = self.response
            if response is not None:
                response._body_received(body[0] if len(body) == 1 else b"".join(body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._hand_on_body()
        response, self.response = self.response, None
        if response is None:
            return
        if exc is None and response._head_done and _ends_at_close(response):
            response._finish()
            return
        reason = f": {exc}" if exc is not None else ""
        message = f"the server closed the connection before its answer ended{reason}"
        response._fail(ConnectionClosedError(message))

    # --- llhttp's events ---

    def on_message_begin(self) -> None:
        if self.response is None:
            # An answer to no request: we no longer know where answers start,
            # so this connection carries nothing more.
            self.drop()
        else:
            self.answering = True

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is not None:
            headers = response.headers
            name = name.lower()
            headers[name] = headers[name] + b", " + value if name in headers else value

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self._parser.get_status_code()
        if status < 200:
            # An interim answer (103 Early Hints, say): the real one follows.
            response.headers.clear()
            return
        response._head_received(status)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._hand_on_body()
        response = self.response
        if response is None or not response._head_done:
            return
        # Asked now: llhttp clears the flags this reads once the message is done.
        self.keep_alive = self._parser.should_keep_alive()
        self.response = None
        response._finish()


def _ends_at_close(response: Response) -> bool:
    """Whether the body is delimited by the connection closing (RFC 9112 §6.3).

    llhttp cannot be told about the close (httptools has no `finish()`), so
    the end of such a body is ours to see.
    """
    if response.status in (204, 304):
        return False
    coding = response.headers.get(b"transfer-encoding")
    if coding is not None:
        return not coding.rstrip().lower().endswith(b"chunked")
    return b"content-length" not in response.headers
