"""How the gateway speaks HTTP about answers: wire error codes as OpenAI errors, and
the headers that say who answered and with which receipt."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from aiohttp import web

from ..openai_api import OpenAIError
from .calls import AnswerResult
from .errors import ClientError

# Wire error codes → HTTP status, as the OpenAI API would answer them.
_STATUS = {
    "model_not_found": 404,
    "duplicate_request_id": 409,
    "no_capacity": 503,
    # Verified work (DESIGN §11): no worker qualifies for the tier, or none is trusted.
    "tier_unavailable": 503,
    "reputation_too_low": 503,
    "replicas_disagree": 502,
    "payment_required": 402,
    "insufficient_funds": 402,
    "bad_payment": 402,
    "request_too_large": 413,
    "proxy_unavailable": 503,
    "timeout": 504,
    "context_length_exceeded": 400,
    "invalid_request": 400,
    # The request needs tools / response_format / logprobs, and no worker offers them.
    "unsupported_feature": 400,
    "invalid_request_error": 400,
    "bad_envelope": 502,
    "bad_answer": 502,
    "bad_receipt": 502,
    "worker_failed": 502,
    "upstream_error": 502,
    "upstream_unavailable": 502,
    "cancelled": 499,
    # Served, but the proxy's book refused to bill it: its fault, not the request's.
    "billing_failed": 500,
    # The root contract does not let any worker of the model serve (DESIGN §11).
    "image_not_on_root": 503,
    "model_not_on_root": 503,
    "stake_too_low": 503,
    "stake_unknown": 503,
}


class EventStream(web.StreamResponse):
    """A server-sent event answer whose headers leave with its first events, in one
    write, as aiohttp's `Response` sends its body (a `StreamResponse` sends them
    alone at `prepare`): a write and the app's read of it fewer per stream.

    Nothing waits for that: every stream writes its first events right after
    `prepare`, as the first chunk is in hand before the headers are made. (The
    switch is aiohttp's own, which `Response` sets; were it gone, the headers
    would leave alone again, as `tests/client/test_event_stream.py` would say.)"""

    _send_headers_immediately = False

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(
            headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )


def openai_error(error: ClientError) -> OpenAIError:
    status = _STATUS.get(error.code, 502)
    return OpenAIError(status, error.message, code=error.code)


def error_response(error: OpenAIError, request_id: str | None = None) -> web.Response:
    headers = {"x-request-id": request_id} if request_id else None
    return web.json_response(error.body(), status=error.status, dumps=dumps, headers=headers)


def dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def worker_json(result: AnswerResult) -> dict[str, Any] | None:
    worker = result.worker
    if worker is None:
        return None
    return {
        "key_id": worker.key_id,
        "public_key": worker.public_key.hex(),
        "trusted": worker.verdict.trusted,
        "attestation": worker.verdict.reason,
        "provider": worker.verdict.provider,
        "measurements": worker.verdict.measurements,
    }


def answer_headers(
    request_id: str, result: AnswerResult, *, receipt: bool = False
) -> dict[str, str]:
    """Who answered and, for an answer sent whole (`receipt`), its final receipt."""
    headers = {"x-request-id": request_id}
    if result.worker is not None:
        headers["x-cocoon-worker"] = result.worker.key_id
        headers["x-cocoon-worker-trusted"] = "true" if result.worker.verdict.trusted else "false"
    if receipt and result.receipt_bytes is not None:
        headers["x-cocoon-receipt"] = base64.b64encode(result.receipt_bytes).decode()
    return headers
