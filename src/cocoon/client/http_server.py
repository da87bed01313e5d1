"""aiohttp's low-level server, made to refuse in the OpenAI error format.

aiohttp answers what its HTTP parser rejects (a malformed request line, a
header over 8 KiB, a bad chunked body) and whatever escapes a handler with a
plain-text page, before the gateway's routes ever see the request. An OpenAI
SDK then reports an unreadable error. `OpenAIServer` builds its connections
with `OpenAIRequestHandler`, whose `handle_error` answers JSON instead, and
logs one short line without the peer's bytes (a flood of malformed requests
must not become a flood of tracebacks in the log).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..openai_api import OpenAIError

log = logging.getLogger(__name__)

# An idle keep-alive connection is closed after this many seconds (aiohttp's
# own default is an hour, which lets idle sockets pile up).
KEEPALIVE_TIMEOUT_S = 75.0
# After an error answered before the whole body arrived, the rest is read and
# dropped for this long before the connection closes (so that the app reads the
# error rather than a reset); aiohttp's default is 10 s.
LINGERING_S = 2.0
# The longest message of a parser refusal passed on to the app.
MAX_REASON = 200


def refusal_body(status: int, message: str) -> bytes:
    """The OpenAI error JSON for a refusal made outside the routes."""
    error = OpenAIError(
        status, message[:MAX_REASON], code="invalid_request" if status < 500 else None
    )
    return msgspec.json.encode(error.body())


class OpenAIRequestHandler(RequestHandler):
    """One HTTP connection whose own refusals are OpenAI error JSON."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # A handler's failure (a bug): its traceback is worth a log line.
            log.error("%s %s failed", request.method, request.path, exc_info=exc)
            message = "internal error in the client gateway"
        else:
            log.info("HTTP request refused (%d): %s", status, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; no error can follow it")
        text = message or HTTPStatus(status).phrase
        response = web.Response(
            status=status,
            body=refusal_body(status, text),
            content_type="application/json",
        )
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # aiohttp logs here, with a traceback, what it meets after a response (a
        # body that failed to decode, read again to drain it): one line is enough.
        exc = kwargs.get("exc_info")
        log.info("HTTP connection closed after an error: %s", type(exc).__name__)


class OpenAIServer(web.Server):
    """`web.Server` whose connections are `OpenAIRequestHandler`s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        kwargs.setdefault("lingering_time", LINGERING_S)
        super().__init__(*args, **kwargs)

    def __call__(self) -> RequestHandler:
        return OpenAIRequestHandler(self, loop=self._loop, **self._kwargs)
