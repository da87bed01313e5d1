"""The worker's HTTP face: /jsonstats, Prometheus /metrics, /healthz."""

from __future__ import annotations

from aiohttp import web

from ..stats_http import add_stats_routes
from .service import Worker


def make_app(worker: Worker) -> web.Application:
    app = web.Application()
    add_stats_routes(
        app,
        snapshot=worker.snapshot,
        metrics=worker.stats.metrics,
        healthy=lambda: worker.channel is not None,
    )
    return app
