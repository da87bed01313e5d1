"""The routes every server shares: /jsonstats, Prometheus /metrics, /healthz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from .metrics import Registry


def add_stats_routes(
    app: web.Application,
    *,
    snapshot: Callable[[], dict[str, Any]],
    metrics: Registry,
    healthy: Callable[[], bool] = lambda: True,
) -> None:
    """Serve a node's snapshot as JSON, its metrics as Prometheus text, and its health."""

    async def jsonstats(request: web.Request) -> web.Response:
        return web.Response(body=msgspec.json.encode(snapshot()), content_type="application/json")

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain")

    async def health(request: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    app.router.add_get("/jsonstats", jsonstats)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/healthz", health)
