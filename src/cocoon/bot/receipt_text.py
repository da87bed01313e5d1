"""/receipt as the user reads it: what ran where for the last answer, from the
gateway's view of it (`/v1/answers/{id}`, or `/v1/receipts/{id}`), and the
Mini App link that opens that answer in the web app."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

NANO_PER_TON = 1_000_000_000
_KIND_NAMES = {"tdx": "TDX", "sev-snp": "SEV-SNP"}
_KIND_OF = {"sim-tdx": "tdx", "tdx": "tdx", "sim-snp": "sev-snp", "sev-snp": "sev-snp"}


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
    trusted = worker.get("trusted")
    lines = [
        "What ran where for the last answer",
        f"Request: {details.get('request_id', receipt.get('request_id', '?'))}",
        f"Model: {details.get('model') or receipt.get('model', '?')}",
        f"Worker: {worker.get('key_id', '?')}"
        + ("" if trusted is None else " (attested)" if trusted else " (not attested)"),
        f"TEE: {tee_line(worker)}",
        *_measurement_lines(worker, measurements),
        f"Image hash: {image or 'none (no attestation)'}",
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


def tee_line(worker: dict[str, Any]) -> str:
    """ "SEV-SNP, simulated (not hardware) · sim-snp", "TDX, hardware · tdx", ..."""
    provider = str(worker.get("provider") or "unknown")
    kind = str(worker.get("tee") or _KIND_OF.get(provider, "none"))
    name = _KIND_NAMES.get(kind)
    if name is None:
        return provider if provider != "none" else "none (no hardware attestation)"
    simulated = worker.get("simulated", provider.startswith("sim-"))
    return f"{name}, {'simulated (not hardware)' if simulated else 'hardware'} · {provider}"


def _measurement_lines(worker: dict[str, Any], measurements: dict[str, Any]) -> list[str]:
    """The facts that differ by kind: SNP's launch measurement, TCB and product; TDX's TCB."""
    kind = worker.get("tee") or _KIND_OF.get(str(worker.get("provider")), "none")
    if kind == "sev-snp":
        tcb = ", ".join(
            f"{name.removeprefix('tcb_')} {level}"
            for name, level in measurements.items()
            if name.startswith("tcb_")
        )
        return [
            f"Product: {measurements.get('product', '?')}",
            f"Launch measurement: {measurements.get('measurement', '?')}",
            f"TCB: {tcb or '?'}",
        ]
    if kind == "tdx" and measurements.get("tcb_status"):
        return [f"TCB: {measurements['tcb_status']}"]
    return []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
