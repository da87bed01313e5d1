"""The client's gateway with the web app mounted at `/`.

The web app is a room over the client (it reads its pool, its answers and its
wallet), so it is mounted from outside: the client's gateway knows nothing of
it, and the import goes one way, web → client.
"""

from __future__ import annotations

from aiohttp import web

from ..client.gateway import Gateway
from ..client.http_dispatch import PATH_PARAMETER
from ..client.proxies import ProxyPool
from ..client.verdicts import Verdicts
from .routes import WebApp


def web_gateway(
    session: ProxyPool, api_keys: list[str], verdicts: Verdicts | None = None
) -> Gateway:
    """The OpenAI-compatible gateway, with the web app (playground, what ran where,
    explorer, wallet) at `/`."""
    gateway = Gateway(session, api_keys, verdicts)
    app = WebApp(session, _path_parameter)
    gateway.mount(app.routes(), app.parameter_routes())
    return gateway


def _path_parameter(request: web.BaseRequest) -> str:
    return request[PATH_PARAMETER]
