"""The web app's routes on the client gateway: its page and files, and the JSON it
reads beyond the OpenAI API (an answer's details and evidence bundle, the wallet).

The gateway keeps its own small router (client/gateway.py); these handlers are
added to it, so they share its API-key check (`/v1/...`), error format and
metrics. Wallet actions change money: they take only `application/json`, which a
page of another origin cannot send without a CORS preflight this server never
grants (a plain form post cannot reach them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from ..client.http_answers import dumps
from ..client.limits import BODY_READ_TIMEOUT_S
from ..client.proxies import ProxyPool
from ..evidence.bundle import encode_bundle
from ..evidence.errors import BundleError
from ..openai_api import OpenAIError
from . import wallet
from .answers import AnswerNotFound, answer_details, evidence_bundle, recent_answer
from .assets import load_assets

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
Parameter = Callable[[web.BaseRequest], str]

# The page loads only its own files and talks only to this gateway.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
MAX_ACTION_BODY = 4096


class WebApp:
    """The web app's handlers, given the gateway's way to read a route's parameter."""

    def __init__(self, pool: ProxyPool, parameter: Parameter) -> None:
        self.pool = pool
        self.parameter = parameter
        self.assets = load_assets()

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            "/": {"GET": self.index},
            "/v1/wallet": {"GET": self.wallet},
            "/v1/wallet/top-up": {"POST": self.top_up},
            "/v1/wallet/close": {"POST": self.close},
        }

    def parameter_routes(self) -> dict[str, tuple[str, dict[str, Handler]]]:
        return {
            "/app": ("/app/{file}", {"GET": self.asset}),
            "/v1/answers": ("/v1/answers/{request_id}", {"GET": self.answer}),
            "/v1/evidence": ("/v1/evidence/{request_id}", {"GET": self.evidence}),
        }

    # -- the page ----------------------------------------------------------------

    async def index(self, request: web.BaseRequest) -> web.Response:
        return self._file("index.html")

    async def asset(self, request: web.BaseRequest) -> web.Response:
        return self._file(self.parameter(request))

    def _file(self, name: str) -> web.Response:
        found = self.assets.get(name)
        if found is None:
            # The name is not shown back: it is whatever the path held.
            raise OpenAIError(404, "no such file in the web app", code="not_found")
        body, content_type = found
        return web.Response(body=body, headers={**_HEADERS, "Content-Type": content_type})

    # -- answers -----------------------------------------------------------------

    async def answer(self, request: web.BaseRequest) -> web.Response:
        result = self._recent(request)
        return _json(answer_details(self.pool, result))

    async def evidence(self, request: web.BaseRequest) -> web.Response:
        result = self._recent(request)
        try:
            bundle = evidence_bundle(self.pool, result)
        except BundleError as exc:
            raise OpenAIError(409, f"no evidence bundle: {exc}", code=exc.reason) from None
        name = f"cocoon-evidence-{result.request_id}.json"
        return web.Response(
            body=encode_bundle(bundle),
            headers={
                "Content-Type": "application/json",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )

    def _recent(self, request: web.BaseRequest) -> Any:
        request_id = self.parameter(request)
        try:
            return recent_answer(self.pool, request_id)
        except AnswerNotFound:
            raise OpenAIError(
                404, "no recent answer with a receipt under this id", code="not_found"
            ) from None

    # -- wallet ------------------------------------------------------------------

    async def wallet(self, request: web.BaseRequest) -> web.Response:
        return _json(await wallet.wallet_status(self.pool))

    async def top_up(self, request: web.BaseRequest) -> web.Response:
        body = await _action_body(request)
        try:
            amount = wallet.parse_ton(body.get("amount_ton"))
            return _json(await wallet.top_up(self.pool, amount))
        except wallet.WalletError as exc:
            raise OpenAIError(exc.status, str(exc)) from None

    async def close(self, request: web.BaseRequest) -> web.Response:
        await _action_body(request)
        try:
            return _json(await wallet.close(self.pool))
        except wallet.WalletError as exc:
            raise OpenAIError(exc.status, str(exc)) from None


async def _action_body(request: web.BaseRequest) -> dict[str, Any]:
    """A wallet action's JSON object, read whole up to MAX_ACTION_BODY (a read may
    return part of a body: it is read to its end, within the bound)."""
    if request.content_type != "application/json":
        raise OpenAIError(415, "wallet actions take a JSON body (Content-Type: application/json)")
    if (request.content_length or 0) > MAX_ACTION_BODY:
        raise OpenAIError(413, f"a wallet action's body is at most {MAX_ACTION_BODY} bytes")
    raw = b""
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            while len(raw) <= MAX_ACTION_BODY and not request.content.at_eof():
                raw += await request.content.read(MAX_ACTION_BODY + 1 - len(raw))
    except TimeoutError:
        raise OpenAIError(408, "the request body did not arrive in time") from None
    if len(raw) > MAX_ACTION_BODY:
        raise OpenAIError(413, f"a wallet action's body is at most {MAX_ACTION_BODY} bytes")
    try:
        body = msgspec.json.decode(raw or b"{}")
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise OpenAIError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the request body must be a JSON object")
    return body


def _json(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, dumps=dumps)
