"""The OpenAI HTTP API as Cocoon answers it: whole answers, streamed chunks, usage,
embeddings and model lists, in OpenAI's shapes.

Encoding uses msgspec throughout; `ChunkFormatter` runs once per streamed
token on the gateway's hot path.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import msgspec

from .inference import Kind, Usage, unpack_vector
from .openai_api import OpenAIError


def usage_json(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cached_prompt_tokens:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached_prompt_tokens}
    if usage.reasoning_tokens:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body


def embedding_response(
    model: str,
    vectors: list[bytes],
    encoding_format: Literal["float", "base64"],
    usage: Usage,
) -> dict[str, Any]:
    """The answer to POST /v1/embeddings; `vectors` are packed float32 (inference.pack_vector)."""
    data: list[dict[str, Any]] = []
    for index, packed in enumerate(vectors):
        # base64 is of the little-endian float32 bytes, exactly as OpenAI sends it.
        embedding: Any = (
            base64.b64encode(packed).decode()
            if encoding_format == "base64"
            else unpack_vector(packed)
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }


def response_id(kind: Kind, request_id: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + request_id


def full_response(
    kind: Kind,
    request_id: str,
    model: str,
    created: int,
    text: str,
    finish_reason: str,
    usage: Usage,
) -> dict[str, Any]:
    """The non-streamed answer object."""
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        obj = "text_completion"
    return {
        "id": response_id(kind, request_id),
        "object": obj,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_json(usage),
    }


class ChunkFormatter:
    """Builds the SSE events of one streamed answer from pre-built byte templates.

    This runs once per token on the gateway's hot path, so the constant part
    of every event is encoded once and only the text is JSON-encoded per call.
    Events follow OpenAI: a first chat event naming the assistant, one event
    per piece of text, an event with the finish reason, then (if asked) one
    with usage and no choices.
    """

    def __init__(self, kind: Kind, request_id: str, model: str, created: int) -> None:
        self.kind = kind
        obj = b"chat.completion.chunk" if kind == "chat" else b"text_completion"
        self.head = b'data: {"id":%s,"object":"%s","created":%d,"model":%s,' % (
            _json(response_id(kind, request_id)),
            obj,
            created,
            _json(model),
        )
        if kind == "chat":
            self._text_prefix = self.head + b'"choices":[{"index":0,"delta":{"content":'
            self._text_suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self._text_prefix = self.head + b'"choices":[{"index":0,"text":'
            self._text_suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def start(self, *, text: bool = True) -> bytes:
        """The opening event: chat names the speaker; completions have none. An answer
        that opens with tool calls (`text` False) opens with no content, as OpenAI's
        does: an empty string there makes SDKs start an empty text part (the Vercel
        AI SDK shows one) and the OpenAI SDK's message content "" instead of None."""
        if self.kind != "chat":
            return b""
        return self.head + (
            b'"choices":[{"index":0,"delta":{"role":"assistant","content":'
            + (b'""' if text else b"null")
            + b'},"logprobs":null,"finish_reason":null}]}\n\n'
        )

    def text(self, text: str) -> bytes:
        return self._text_prefix + _json(text) + self._text_suffix

    def finish(self, finish_reason: str) -> bytes:
        empty = b'"delta":{}' if self.kind == "chat" else b'"text":""'
        return self.head + b'"choices":[{"index":0,%s,"logprobs":null,"finish_reason":%s}]}\n\n' % (
            empty,
            _json(finish_reason),
        )

    def usage(self, usage: Usage) -> bytes:
        return self.head + b'"choices":[],"usage":%s}\n\n' % _json(usage_json(usage))


_json = msgspec.json.Encoder().encode


def sse_error(error: OpenAIError) -> bytes:
    return b"data: " + _json(error.body()) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def models_list(models: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "cocoon"} for m in models],
    }
