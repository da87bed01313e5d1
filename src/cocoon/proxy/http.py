"""The proxy's HTTP face: /jsonstats, Prometheus /metrics and an HTML status page."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from ..stats_http import add_stats_routes
from .service import Proxy

PROXY: web.AppKey[Proxy] = web.AppKey("proxy", Proxy)


def make_app(proxy: Proxy) -> web.Application:
    app = web.Application()
    app[PROXY] = proxy
    app.router.add_get("/", status_page)
    add_stats_routes(app, snapshot=proxy.snapshot, metrics=proxy.metrics)
    return app


def _trust(trusted: object) -> str:
    return '<b class="ok">trusted</b>' if trusted else '<b class="warn">untrusted</b>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}"><i>none</i></td></tr>'
    return f"<table><tr>{head}</tr>{body}</table>"


def _reputation(desk: dict[str, Any], key_id: str, score: float) -> str:
    """A worker's score at this proxy, and why when clients reported it."""
    standing = desk["workers"].get(key_id) or {}
    shown = f"{score:.2f}"
    if score < desk["threshold"]:
        shown = f"<b>{shown} (no traffic)</b>"
    reports = standing.get("reports", 0)
    return shown + (f" · {reports} reports" if reports else "")


def _ton(nano: int) -> str:
    whole, frac = divmod(nano, 1_000_000_000)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") + " TON"


def _payments_section(p: dict[str, Any] | None) -> str:
    """Channels: what clients owe and vouchered, what is redeemed, what workers were paid."""
    if p is None:
        return "<h2>Payments</h2><p>off (no chain configured): charges are only recorded</p>"
    e = html.escape
    rows = [
        [
            "client → proxy" if c["side"] == "payee" else "proxy → worker",
            f"<code>{e(c['channel'][:14])}…</code>",
            e(c["peer"]),
            _ton(c["deposit_nano"]),
            _ton(c["owed_nano"]),
            _ton(c["vouchered_nano"]),
            _ton(c["unpaid_nano"]),
            _ton(c["redeemed_nano"]),
            _ton(c["unredeemed_nano"]),
        ]
        for c in p["channels"]
    ]
    table = _table(
        [
            "direction",
            "channel",
            "peer",
            "deposit",
            "owed",
            "vouchered",
            "unpaid",
            "redeemed",
            "unredeemed",
        ],
        rows,
    )
    return (
        f"<h2>Payments</h2><p>wallet <code>{e(p['wallet'])}</code> · root"
        f" <code>{e(p['root'])}</code> · network {p['network_id']}</p>{table}"
    )


async def status_page(request: web.Request) -> web.Response:
    s: dict[str, Any] = request.app[PROXY].snapshot()
    e = html.escape
    node = s["node"]
    workers = _table(
        [
            "worker",
            "address",
            "models",
            "coefficient",
            "load",
            "served",
            "failures",
            "first chunk (ms)",
            "reputation",
            "attestation",
        ],
        [
            [
                e(w["key_id"]),
                e(w["address"]),
                e(", ".join(w["models"])),
                f"{w['coefficient_milli'] / 1000:g}",
                f"{w['active']}/{w['max_active_requests']}",
                str(w["served"]),
                str(w["failures"]),
                f"{w['first_chunk_ewma_ms']:.1f}",
                _reputation(s["reputation"], w["key_id"], w["reputation"]),
                _trust(w["trusted"]) + f" {e(w['tee'])}: " + e(w["attestation"]),
            ]
            for w in s["workers"]
        ],
    )
    models = _table(["model", "workers"], [[e(m), str(n)] for m, n in s["models"].items()])
    clients = _table(
        ["client", "address", "active", "attestation"],
        [
            [e(c["key_id"]), e(c["address"]), str(c["active"]), _trust(c["trusted"])]
            for c in s["clients"]
        ],
    )
    b = s["billing"]
    totals = _table(
        ["requests billed", "prompt tokens", "completion tokens", "billed (nanotons)", "running"],
        [
            [
                str(b["requests"]),
                str(b["prompt_tokens"]),
                str(b["completion_tokens"]),
                str(b["billed_nano"]),
                str(s["requests"]["running"]),
            ]
        ],
    )
    payments = _payments_section(s.get("payments"))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>Cocoon proxy {e(node["key_id"])}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:left}}th{{background:#f4f4f4}}.ok{{color:#070}}.warn{{color:#b50}}</style></head><body>
<h1>Cocoon proxy <code>{e(node["key_id"])}</code></h1>
<p>network <code>{e(s["network"])}</code> · listening on <code>{e(s["listen"])}</code> ·
up {s["uptime_s"]:.0f} s · this node: {_trust(node["trusted"])}
{e(str(node.get("tee", "")))} {e(str(node["note"]))}</p>
<h2>Workers</h2>{workers}<h2>Models</h2>{models}<h2>Clients</h2>{clients}
<h2>Totals</h2>{totals}{payments}
<p><a href="/jsonstats">/jsonstats</a> · <a href="/metrics">/metrics</a></p></body></html>"""
    return web.Response(text=page, content_type="text/html")
