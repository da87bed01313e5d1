"""How the gateway handles an HTTP request around its route.

The route is found in the gateway's tables (a dictionary of paths, see
`gateway.py` for why); the caller is admitted by API key or as a Telegram user;
a request whose id the app gave runs one per id at a time
(`client/idempotency.py`); every error leaves in the OpenAI error format with
the status an SDK expects; the response is counted by route and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..metrics import Counter
from ..openai_api import OpenAIError
from ..request_log import RequestLog
from .errors import ClientError
from .http_answers import error_response, openai_error
from .idempotency import Interrupted, OneAtATime, WholeAnswer
from .limits import BODY_READ_TIMEOUT_S
from .telegram_users import TelegramUsers

log = logging.getLogger(__name__)
request_lines = RequestLog(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
# The last path segment of a route with a parameter (a model, a request id).
PATH_PARAMETER: web.RequestKey[str] = web.RequestKey("path_parameter", str)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# Path → method → handler.
Routes = dict[str, dict[str, Handler]]
# For the paths with a parameter: the path before the last "/" → (the route's
# name, method → handler).
ParameterRoutes = dict[str, tuple[str, dict[str, Handler]]]
# The routes that send a request to a worker: one per app-given id at a time.
_GENERATION_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
)


class Dispatcher:
    """Runs each HTTP request through admission, its route and the error format."""

    def __init__(
        self,
        routes: Routes,
        parameter_routes: ParameterRoutes,
        api_keys: list[bytes],
        telegram: TelegramUsers,
        runs: OneAtATime,
        requests_total: Counter,
        followed_total: Counter,
    ) -> None:
        self._routes = routes
        self._parameter_routes = parameter_routes
        self.api_keys = api_keys
        self.telegram = telegram
        self.runs = runs
        self.requests_total = requests_total
        self.followed_total = followed_total

    def _route(self, request: web.BaseRequest) -> tuple[str, Handler | None, bool]:
        """The route's name (a metrics label), its handler, and whether the path is known."""
        path = request.path
        methods = self._routes.get(path)
        name = path
        if methods is None:
            parent, _, parameter = path.rpartition("/")
            found = self._parameter_routes.get(parent) if parameter else None
            if found is None:
                return "unmatched", None, False
            name, methods = found
            request[PATH_PARAMETER] = parameter
        # A GET route answers HEAD too, as aiohttp's router does.
        method = "GET" if request.method == "HEAD" else request.method
        handler = methods.get(method)
        return (name, handler, True) if handler is not None else ("unmatched", None, True)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        # Label by route, not path: /v1/receipts/{id} must not make a series per id.
        path, handler, known = self._route(request)

        async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
            user = self.telegram.identify(request)
            if user is None or not self.telegram.may(path, request.method, _GENERATION_ROUTES):
                self._authorize(request)
            if handler is None:
                if known:
                    raise OpenAIError(405, "Method Not Allowed")
                raise OpenAIError(404, "Not Found", code="not_found")
            if user is not None and path in _GENERATION_ROUTES:
                self.telegram.admit(user)
                try:
                    return await run(request)
                finally:
                    self.telegram.charge(user, request.get(REQUEST_ID))
            return await run(request)

        async def run(request: web.BaseRequest) -> web.StreamResponse:
            assert handler is not None
            if path in _GENERATION_ROUTES and given_request_id(request) is not None:
                return await self._one_at_a_time(path, request, handler)
            return await handler(request)

        try:
            response = await self._respond(request, dispatch)
        except (asyncio.CancelledError, ConnectionError):
            # The app went away (aiohttp cancels the handler when it disconnects):
            # nothing can be answered, but the cut is counted, as nginx's 499.
            self.requests_total.inc(path=path, status="499")
            raise
        self.requests_total.inc(path=path, status=str(response.status))
        request_lines.info(
            "%s %s %d %.1f ms%s",
            request.method,
            request.path,
            response.status,
            (time.monotonic() - started) * 1000,
            f" request={request[REQUEST_ID]}" if REQUEST_ID in request else "",
        )
        return response

    async def _respond(self, request: web.BaseRequest, handler: Handler) -> web.StreamResponse:
        """The handler's response, or its error as an OpenAI error response."""
        try:
            return await handler(request)
        except OpenAIError as exc:
            response = error_response(exc, request.get(REQUEST_ID))
            if exc.status == 408:
                # The body is still coming, slowly: do not linger reading it.
                response.force_close()
            return response
        except ClientError as exc:
            return error_response(openai_error(exc), request.get(REQUEST_ID))
        except web.HTTPException as exc:
            # aiohttp's own refusals: a body over MAX_BODY, a malformed one.
            if exc.status < 400:
                raise
            return error_response(OpenAIError(exc.status, exc.reason))
        except (RequestPayloadError, HttpProcessingError) as exc:
            # A body aiohttp could not read: bad Content-Encoding, a broken chunk.
            cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
            reason = cause.message if isinstance(cause, HttpProcessingError) else str(cause)
            message = f"the request body could not be read: {reason.strip()}"[:200]
            response = error_response(OpenAIError(400, message), request.get(REQUEST_ID))
            # The rest of the body cannot be told from the next request: close.
            response.force_close()
            return response
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            # The HTTP boundary: a bug must still answer in the OpenAI format, and be
            # counted and logged with its traceback, not left to aiohttp's text page.
            log.exception("%s %s failed", request.method, request.path)
            return error_response(
                OpenAIError(500, "internal error in the client gateway"), request.get(REQUEST_ID)
            )

    async def _one_at_a_time(
        self, path: str, request: web.BaseRequest, handler: Handler
    ) -> web.StreamResponse:
        """Run a request whose id the app gave, one per id at a time (client/idempotency.py)."""
        key = request[REQUEST_ID]
        body = await read_body(request)
        turn = await self.runs.begin(key, hashlib.sha256(f"{path}\n".encode() + body).digest())
        if isinstance(turn, WholeAnswer):
            self.followed_total.inc()
            return turn.response()
        if isinstance(turn, Interrupted):
            raise ClientError(
                "duplicate_request_id",
                f"request {key} was cut by its app while this copy waited for it; send it again",
                True,
            )
        response: web.StreamResponse | None = None
        try:
            response = await self._respond(request, handler)
            return response
        finally:
            # A streamed answer is not kept here: a follower runs after it, as a retry.
            self.runs.end(key, turn, response)

    def _authorize(self, request: web.BaseRequest) -> None:
        if not self.api_keys or not request.path.startswith("/v1/"):
            return
        header = request.headers.get("Authorization", "")
        # surrogateescape: header bytes that are not UTF-8 compare as the bytes
        # they are (a wrong key), not as a 500.
        token = header.removeprefix("Bearer ").strip().encode("utf-8", "surrogateescape")
        if not any(hmac.compare_digest(token, key) for key in self.api_keys):
            raise OpenAIError(
                401,
                "Incorrect API key provided. Pass a configured key as `Authorization: Bearer`.",
                code="invalid_api_key",
            )


def given_request_id(request: web.BaseRequest) -> str | None:
    """The request id the app chose, if it chose one (then also `request[REQUEST_ID]`)."""
    given = request.headers.get("Idempotency-Key") or request.headers.get("X-Request-Id")
    if given is not None:
        if not _REQUEST_ID.match(given):
            raise OpenAIError(
                400,
                "X-Request-Id / Idempotency-Key must be 1-128 characters of [A-Za-z0-9._:-]",
                code="invalid_request_error",
            )
        request[REQUEST_ID] = given
    return given


async def read_body(request: web.BaseRequest) -> bytes:
    """The whole body, within BODY_READ_TIMEOUT_S (a body that never completes must
    not hold its connection and buffer for minutes)."""
    if request.content.is_eof():
        # Arrived whole with its head, as nearly every body does: nothing to wait
        # for, and no timer to arm and cancel (4 µs a request).
        return await request.read()
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise OpenAIError(
            408, f"the request body did not arrive within {BODY_READ_TIMEOUT_S:g} s"
        ) from None
