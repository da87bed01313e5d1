"""/receipt as the user reads it: what ran where for the last answer, from the
gateway's view of it (`/v1/answers/{id}`, or `/v1/receipts/{id}`), and the
Mini App link that opens that answer in the web app."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

NANO_PER_TON = 1_000_000_000


def mini_app_url(web_url: str, request_id: str) -> str:
    """The web app's page of one answer. A query, not a fragment: Telegram puts its
    own launch parameters (`#tgWebAppData=...`) in the fragment of a Mini App's URL."""
    return f"{web_url.rstrip('/')}/?{urlencode({'answer': request_id})}"


def ton(amount_nano: int) -> str:
    """Nanotons as TON, exactly (no float)."""
    sign = "-" if amount_nano < 0 else ""
    whole, frac = divmod(abs(amount_nano), NANO_PER_TON)
    return f"{sign}{whole}.{frac:09d}".rstrip("0").rstrip(".") + " TON"


def receipt_message(details: dict[str, Any]) -> str:
    """The lines of /receipt for one answer."""
    receipt = _dict(details.get("receipt"))
    worker = _dict(details.get("worker"))
    measurements = _dict(worker.get("measurements"))
    tokens = _dict(details.get("tokens"))
    prompt = tokens.get("prompt", receipt.get("prompt_tokens"))
    completion = tokens.get("completion", receipt.get("completion_tokens"))
    image = worker.get("image_hash") or measurements.get("image_hash")
    provider = str(worker.get("provider") or "unknown")
    if provider == "sim-tdx":
        provider = "sim-tdx (simulated TDX, not hardware)"
    trusted = worker.get("trusted")
    lines = [
        "What ran where for the last answer",
        f"Request: {details.get('request_id', receipt.get('request_id', '?'))}",
        f"Model: {details.get('model') or receipt.get('model', '?')}",
        f"Worker: {worker.get('key_id', '?')}"
        + ("" if trusted is None else " (attested)" if trusted else " (not attested)"),
        f"TEE: {provider}",
        f"Image hash: {image or 'none (no TDX quote)'}",
        f"Tokens: {prompt} prompt + {completion} completion",
    ]
    amount = details.get("amount_nano")
    if isinstance(amount, int):
        channel = details.get("channel")
        lines.append(f"Price: {ton(amount)} ({amount} nanotons)")
        if channel:
            lines.append(f"Paid from channel: {channel}")
    else:
        lines.append("Price: not paid (this gateway runs without payments)")
    signature = receipt.get("signature", details.get("signature"))
    if signature:
        lines.append(f"Receipt signature: {signature}")
    return "\n".join(lines)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
