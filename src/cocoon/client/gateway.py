"""The client's OpenAI-compatible HTTP gateway: thin routes over the `ProxyPool`.

Routes validate and format (openai_api); the session does the work. Errors
leave in the OpenAI error format with the status an SDK expects.

The gateway runs on aiohttp's low-level server with a dictionary of routes:
its ten fixed paths need no URL dispatcher, and aiohttp's application layer
(router, middleware chain, per-request app freezing) cost 24 µs a request,
a tenth of the client node's CPU per answer (`cocoon bench`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..crypto.errors import CryptoError
from ..crypto.receipts import receipt_to_json, verify_receipt
from ..metrics import Registry
from ..openai_api import (
    OpenAIError,
    models_list,
    parse_chat,
    parse_completion,
    parse_embedding,
)
from ..web.routes import WebApp
from .auditing import Auditor
from .directory import served_models
from .errors import ClientError
from .http_answers import dumps, error_response, openai_error, worker_json
from .http_server import OpenAIServer
from .idempotency import Interrupted, OneAtATime, WholeAnswer
from .limits import BODY_READ_TIMEOUT_S, MAX_BODY_BYTES
from .model_features import served_features
from .proxies import ProxyPool
from .replicas import Replicator
from .responding import Responder
from .responses_route import ResponsesEndpoint
from .status import attestation_status
from .telegram_users import TelegramUsers
from .tier_options import request_tier, served_tiers
from .verdicts import Verdicts

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Largest request body accepted (a long chat history, many embedding inputs):
# what fits a wire frame once sealed (client/limits.py).
MAX_BODY = MAX_BODY_BYTES

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
# The last path segment of a route with a parameter (a model, a request id).
PATH_PARAMETER: web.RequestKey[str] = web.RequestKey("path_parameter", str)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# The routes that send a request to a worker: one per app-given id at a time.
_GENERATION_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
)


class Gateway:
    """The HTTP side of a client node."""

    def __init__(
        self, session: ProxyPool, api_keys: list[str], verdicts: Verdicts | None = None
    ) -> None:
        self.session = session
        self.api_keys = [k.encode() for k in api_keys]
        self.metrics = Registry("cocoon_client")
        self.requests_total = self.metrics.counter("requests_total", "HTTP requests by status.")
        self.metrics.gauge("proxy_connected", "1 while the proxy is connected.", self._connected)
        self.followed_total = self.metrics.counter(
            "followed_total", "Requests answered with the response of one running under their id."
        )
        # The running request of each app-given id (one at a time).
        self.runs = OneAtATime()
        # Verified work: audits of answers, and the replicated tier.
        self.auditor = Auditor(session, session.config.audit)
        self.replicator = Replicator(session, self.auditor)
        # Sends a request and turns its answer into the OpenAI response.
        self.responder = Responder(session, self.metrics, self.auditor, self.replicator)
        # The Responses API, over the same path; recent responses kept for follow-ups.
        self.responses = ResponsesEndpoint(self.responder)
        # A failed audit's evidence goes on to the root's verifiers, for a slash.
        self.verdicts = verdicts
        if verdicts is not None:
            self.auditor.escalate = verdicts.escalate
        self.started_at = time.time()
        # People from Telegram (the web app as a Mini App): initData, per-user limits.
        self.telegram = TelegramUsers(session.config.telegram, session.results)
        # Path → method → handler; and, for the two paths with a parameter,
        # the path before the last "/" → (the route's name, method → handler).
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/models": {"GET": self.list_models},
            "/v1/chat/completions": {"POST": self.chat},
            "/v1/completions": {"POST": self.completions},
            "/v1/embeddings": {"POST": self.embeddings},
            "/v1/responses": {"POST": self.create_response},
            "/v1/attestation": {"GET": self.attestation},
            "/healthz": {"GET": self.health},
            "/jsonstats": {"GET": self.jsonstats},
            "/metrics": {"GET": self.prometheus},
        }
        self._parameter_routes: dict[str, tuple[str, dict[str, Handler]]] = {
            "/v1/models": ("/v1/models/{model}", {"GET": self.get_model}),
            "/v1/receipts": ("/v1/receipts/{request_id}", {"GET": self.receipt}),
            "/v1/responses": ("/v1/responses/{response_id}", {"GET": self.get_response}),
        }
        # The web app at / (playground, what ran where, explorer, wallet): cocoon.web.
        web_app = WebApp(session, lambda request: request[PATH_PARAMETER])
        self._routes.update(web_app.routes())
        self._parameter_routes.update(web_app.parameter_routes())

    def _connected(self) -> float:
        return 1.0 if self.session.channel is not None else 0.0

    def server(self) -> web.Server:
        """The HTTP server; serve it with `web.ServerRunner` (inside the running loop)."""
        loop = asyncio.get_running_loop()

        def request_factory(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY
            )

        return OpenAIServer(
            self._handle,
            request_factory=request_factory,
            handler_cancellation=True,
            access_log=None,
        )

    # -- plumbing ------------------------------------------------------------

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

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
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
            if path in _GENERATION_ROUTES and self._given_request_id(request) is not None:
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
        log.info(
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
        body = await _read_body(request)
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

    def _given_request_id(self, request: web.BaseRequest) -> str | None:
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

    def _request_id(self, request: web.BaseRequest) -> str:
        request_id = self._given_request_id(request) or self.session.new_request_id()
        request[REQUEST_ID] = request_id
        return request_id

    # -- routes --------------------------------------------------------------

    async def list_models(self, request: web.BaseRequest) -> web.Response:
        workers = await self.session.workers()  # once, for the ids and their tiers
        body = models_list(served_models(workers))
        tiers = served_tiers(workers)
        features = served_features(workers)
        for entry in body["data"]:
            entry["cocoon"] = {
                "tiers": tiers.get(entry["id"], []),
                "features": features.get(entry["id"], []),
            }
        return web.json_response(body, dumps=dumps)

    async def get_model(self, request: web.BaseRequest) -> web.Response:
        model = request[PATH_PARAMETER]
        if model not in await self.session.models():
            raise OpenAIError(404, f"The model `{model}` does not exist.", code="model_not_found")
        return web.json_response(models_list([model])["data"][0], dumps=dumps)

    async def chat(self, request: web.BaseRequest) -> web.StreamResponse:
        parsed = parse_chat(await _read_body(request))
        tier = request_tier(request, parsed)
        return await self.responder.generate(request, parsed, tier, self._request_id(request))

    async def completions(self, request: web.BaseRequest) -> web.StreamResponse:
        parsed = parse_completion(await _read_body(request))
        tier = request_tier(request, parsed)
        return await self.responder.generate(request, parsed, tier, self._request_id(request))

    async def embeddings(self, request: web.BaseRequest) -> web.Response:
        parsed = parse_embedding(await _read_body(request))
        return await self.responder.embeddings(parsed, self._request_id(request))

    async def create_response(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await _read_body(request)
        return await self.responses.create(request, body, self._request_id(request))

    async def get_response(self, request: web.BaseRequest) -> web.Response:
        return await self.responses.get(request[PATH_PARAMETER])

    async def receipt(self, request: web.BaseRequest) -> web.Response:
        request_id = request[PATH_PARAMETER]
        result = self.session.results.get(request_id)
        if result is None or result.receipt is None or result.receipt_bytes is None:
            raise OpenAIError(404, f"no receipt for request {request_id}", code="not_found")
        # On the answer's path the client checks the receipt's tag; whoever asks
        # for the receipt gets its signature checked too (what a third party does).
        try:
            verify_receipt(result.receipt_bytes, self.session.config.network)
            signature = "valid"
        except CryptoError as exc:
            signature = f"invalid: {exc}"
        body = {
            "request_id": request_id,
            "final": result.receipt.final,
            "worker": worker_json(result),
            "receipt": receipt_to_json(result.receipt),
            "signed": base64.b64encode(result.receipt_bytes).decode(),
            "signature": signature,
        }
        return web.json_response(body, dumps=dumps)

    async def attestation(self, request: web.BaseRequest) -> web.Response:
        return web.json_response(await self.status(), dumps=dumps)

    async def health(self, request: web.BaseRequest) -> web.Response:
        ok = self.session.channel is not None
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def status(self) -> dict[str, Any]:
        return await attestation_status(self.session)

    async def jsonstats(self, request: web.BaseRequest) -> web.Response:
        body = await self.status()
        body.update(
            uptime_s=round(time.time() - self.started_at, 1),
            reconnects=self.session.reconnects,
            requests={
                f"{dict(k)['path']} {dict(k)['status']}": int(v)
                for k, v in self.requests_total.values.items()
            },
            tokens={dict(k)["kind"]: int(v) for k, v in self.responder.tokens_total.values.items()},
            first_chunk_p50_s=self.responder.first_chunk_seconds.quantile(0.5),
            first_chunk_p99_s=self.responder.first_chunk_seconds.quantile(0.99),
            audits=self.auditor.status(),
            replicas=self.replicator.status(),
            verdicts=self.verdicts.status() if self.verdicts is not None else None,
            telegram=self.telegram.status(),
        )
        return web.json_response(body, dumps=dumps)

    async def prometheus(self, request: web.BaseRequest) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain")


async def _read_body(request: web.BaseRequest) -> bytes:
    """The whole body, within BODY_READ_TIMEOUT_S (a body that never completes must
    not hold its connection and buffer for minutes)."""
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise OpenAIError(
            408, f"the request body did not arrive within {BODY_READ_TIMEOUT_S:g} s"
        ) from None
