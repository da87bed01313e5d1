"""The worker's HTTP face: /jsonstats, Prometheus /metrics, /healthz."""

from __future__ import annotations

import msgspec
from aiohttp import web

from .service import Worker

WORKER: web.AppKey[Worker] = web.AppKey("worker", Worker)


def make_app(worker: Worker) -> web.Application:
    app = web.Application()
    app[WORKER] = worker
    app.router.add_get("/jsonstats", jsonstats)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", health)
    return app


async def jsonstats(request: web.Request) -> web.Response:
    body = msgspec.json.encode(request.app[WORKER].snapshot())
    return web.Response(body=body, content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[WORKER].stats.metrics.render(), content_type="text/plain")


async def health(request: web.Request) -> web.Response:
    connected = request.app[WORKER].channel is not None
    return web.json_response({"ok": connected}, status=200 if connected else 503)
