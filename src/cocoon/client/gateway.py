"""The client's OpenAI-compatible HTTP gateway: thin routes over the `ProxyPool`.

Routes validate and format (openai_api); the session does the work. What
happens around every route (admission, one run per app-given id, the OpenAI
error format, counting) is `http_dispatch`.

The gateway runs on aiohttp's low-level server with a dictionary of routes:
its ten fixed paths need no URL dispatcher, and aiohttp's application layer
(router, middleware chain, per-request app freezing) cost 24 µs a request,
a tenth of the client node's CPU per answer (`cocoon bench`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from aiohttp import web

from ..crypto.errors import CryptoError
from ..crypto.receipts import receipt_to_json, verify_receipt
from ..metrics import Registry
from ..openai_api import OpenAIError, parse_chat, parse_completion, parse_embedding
from ..openai_output import models_list
from .auditing import Auditor
from .directory import served_models
from .http_answers import dumps, worker_json
from .http_dispatch import (
    PATH_PARAMETER,
    REQUEST_ID,
    Dispatcher,
    ParameterRoutes,
    Routes,
    given_request_id,
    read_body,
)
from .http_server import OpenAIServer
from .idempotency import OneAtATime
from .limits import MAX_BODY_BYTES
from .model_features import served_features
from .proxies import ProxyPool
from .replicas import Replicator
from .responding import Responder
from .responses_route import ResponsesEndpoint
from .status import attestation_status
from .telegram_users import TelegramUsers
from .tier_options import request_tier, served_tiers
from .verdicts import Verdicts

# Largest request body accepted (a long chat history, many embedding inputs):
# what fits a wire frame once sealed (client/limits.py).
MAX_BODY = MAX_BODY_BYTES


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
        self._routes: Routes = {
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
        self._parameter_routes: ParameterRoutes = {
            "/v1/models": ("/v1/models/{model}", {"GET": self.get_model}),
            "/v1/receipts": ("/v1/receipts/{request_id}", {"GET": self.receipt}),
            "/v1/responses": ("/v1/responses/{response_id}", {"GET": self.get_response}),
        }
        self.dispatcher = Dispatcher(
            self._routes,
            self._parameter_routes,
            self.api_keys,
            self.telegram,
            self.runs,
            self.requests_total,
            self.followed_total,
        )

    def mount(self, routes: Routes, parameter_routes: ParameterRoutes) -> None:
        """Serve another room's routes beside the API's (the web app: `cocoon.web.serve`),
        through the same admission and error format."""
        self._routes.update(routes)
        self._parameter_routes.update(parameter_routes)

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
            self.dispatcher.handle,
            request_factory=request_factory,
            handler_cancellation=True,
            access_log=None,
        )

    def _request_id(self, request: web.BaseRequest) -> str:
        request_id = given_request_id(request) or self.session.new_request_id()
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
        parsed = parse_chat(await read_body(request))
        tier = request_tier(request, parsed)
        return await self.responder.generate(request, parsed, tier, self._request_id(request))

    async def completions(self, request: web.BaseRequest) -> web.StreamResponse:
        parsed = parse_completion(await read_body(request))
        tier = request_tier(request, parsed)
        return await self.responder.generate(request, parsed, tier, self._request_id(request))

    async def embeddings(self, request: web.BaseRequest) -> web.Response:
        parsed = parse_embedding(await read_body(request))
        return await self.responder.embeddings(parsed, self._request_id(request))

    async def create_response(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await read_body(request)
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
