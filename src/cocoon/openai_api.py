"""The OpenAI HTTP API as Cocoon reads it: request schemas, validation, errors.

Declared types, separate from serving code (like vLLM's entrypoints): the
gateway validates a body into a `GenerationRequest` here; what it sends back
(answers, streamed chunks, usage, model lists) is `openai_output`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from .agent_api.controls import ControlError, read_controls, refuse_unhonoured
from .inference import ChatMessage, GenerationRequest, Kind
from .request_json import MAX_DIMENSIONS, NESTING_PROBLEM, json_problem

# Sampling and output parameters passed through to backends untouched.
PASSTHROUGH = (
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "response_format",
    "top_k",
    "min_p",
    "repetition_penalty",
    # Checked in agent_api.controls (tools, structured output, logprobs).
    "tools",
    "tool_choice",
    "parallel_tool_calls",
)
MAX_STOP_SEQUENCES = 4
# OpenAI's own bound on the inputs of one embeddings request.
MAX_EMBEDDING_INPUTS = 2048


class OpenAIError(Exception):
    """An error in the OpenAI format: HTTP status, type, code, message, param."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type_: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_ or _default_type(status)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _default_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "invalid_request_error"
    if status == 429:
        return "rate_limit_exceeded"
    if status < 500:
        return "invalid_request_error"
    return "server_error" if status != 503 else "service_unavailable"


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class _Common(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None


class ChatCompletionRequest(_Common, frozen=True, kw_only=True):
    """The body of POST /v1/chat/completions (the fields Cocoon reads itself)."""

    messages: list[ChatMessage]
    max_completion_tokens: int | None = None


class CompletionRequest(_Common, frozen=True, kw_only=True):
    """The body of POST /v1/completions."""

    prompt: str | list[str]
    echo: bool = False


class EmbeddingRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body of POST /v1/embeddings."""

    model: str
    # A string or a list of strings; OpenAI also takes token arrays, which we
    # refuse: tokens of which tokenizer would be a guess (checked by hand,
    # since msgspec cannot tell a list of strings from a list of ints in a union).
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _bad(message: str, param: str | None = None) -> OpenAIError:
    # OpenAI leaves `code` empty for plain validation errors; `type` says it.
    return OpenAIError(400, message, param=param)


def _decode_body(body: bytes) -> dict[str, Any]:
    """The body as JSON, within the request limits (request_json.py)."""
    try:
        data = msgspec.json.decode(body)
    except RecursionError:
        raise _bad(NESTING_PROBLEM) from None
    except UnicodeDecodeError as exc:
        raise _bad(f"request body is not valid UTF-8: {exc.reason}") from None
    except msgspec.DecodeError as exc:
        raise _bad(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad("request body must be a JSON object")
    problem = json_problem(data)
    if problem is not None:
        raise _bad(*problem)
    # OpenAI reads a top-level null as the parameter left out, and SDKs that
    # serialise every field of a typed request (Java, .NET, Go, Spring AI...)
    # send `"n": null`, `"stream": null`, `"tool_choice": null` by default.
    return {key: value for key, value in data.items() if value is not None}


# msgspec: "Object missing required field `messages`" (then maybe " - at `$.x`").
_MISSING_FIELD = re.compile(r"Object missing required field `([^`]+)`")


def _convert(data: dict[str, Any], cls: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = None
        if "- at `$." in text:
            param = text.rsplit("- at `$.", 1)[1].rstrip("`")
        missing = _MISSING_FIELD.match(text)
        if missing:
            param = f"{param}.{missing[1]}" if param else missing[1]
        raise _bad(text, param) from exc


def _stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP_SEQUENCES:
        raise _bad(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed", "stop")
    if any(not s for s in stops):
        raise _bad("stop sequences must not be empty", "stop")
    return stops


def _check_common(request: _Common, max_tokens: int | None) -> None:
    if not request.model:
        raise _bad("model must not be empty", "model")
    if request.n not in (None, 1):
        raise _bad("only n=1 is supported", "n")
    if max_tokens is not None and max_tokens < 1:
        raise _bad("max_tokens must be at least 1", "max_tokens")
    if request.temperature is not None and not 0 <= request.temperature <= 2:
        raise _bad("temperature must be between 0 and 2", "temperature")
    if request.top_p is not None and not 0 <= request.top_p <= 1:
        raise _bad("top_p must be between 0 and 1", "top_p")


# What a request with no tools may still say about tools, harmlessly: frameworks
# send `tools: []` with `tool_choice: "auto"` for an agent given no tools.
_TOOLLESS_CHOICES = ("auto", "none")


def _extra(data: dict[str, Any], kind: Kind) -> dict[str, object]:
    extra = {key: data[key] for key in PASSTHROUGH if key in data}
    choice = extra.get("tool_choice", "auto")
    if kind == "chat" and not extra.get("tools") and choice in _TOOLLESS_CHOICES:
        # Dropped rather than passed on: an `openai` backend's server may be
        # as strict as OpenAI, which refuses these without tools.
        for name in ("tools", "tool_choice", "parallel_tool_calls"):
            extra.pop(name, None)
    return extra


class ParsedRequest(msgspec.Struct, frozen=True):
    """A validated request: what to generate, and how to answer the app."""

    generation: GenerationRequest
    stream: bool
    include_usage: bool
    # Cocoon's own options (`extra_body={"cocoon": {...}}`), read by the gateway.
    cocoon: dict[str, Any] = {}


def parse_chat(body: bytes) -> ParsedRequest:
    """Validate a chat completions body; raises OpenAIError(400) with the offending param."""
    data = _decode_body(body)
    request: ChatCompletionRequest = _convert(data, ChatCompletionRequest)
    if not request.messages:
        raise _bad("messages must not be empty", "messages")
    max_tokens = (
        request.max_completion_tokens
        if request.max_completion_tokens is not None
        else request.max_tokens
    )
    _check_common(request, max_tokens)
    return _parsed("chat", request, data, max_tokens, messages=request.messages)


def parse_completion(body: bytes) -> ParsedRequest:
    """Validate a completions body; raises OpenAIError(400) with the offending param."""
    data = _decode_body(body)
    request: CompletionRequest = _convert(data, CompletionRequest)
    prompt = request.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise _bad("prompt must be a string or a list of exactly one string", "prompt")
        prompt = prompt[0]
    if request.echo:
        raise _bad("echo is not supported", "echo")
    # The OpenAI completions default is 16 tokens.
    max_tokens = request.max_tokens if request.max_tokens is not None else 16
    _check_common(request, max_tokens)
    return _parsed("completion", request, data, max_tokens, prompt=prompt)


class ParsedEmbedding(msgspec.Struct, frozen=True):
    """A validated embeddings request: what to embed, and how to encode the vectors."""

    generation: GenerationRequest
    encoding_format: Literal["float", "base64"]


def parse_embedding(body: bytes) -> ParsedEmbedding:
    """Validate an embeddings body; raises OpenAIError(400) with the offending param."""
    data = _decode_body(body)
    request: EmbeddingRequest = _convert(data, EmbeddingRequest)
    if not request.model:
        raise _bad("model must not be empty", "model")
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts:
        raise _bad("input must not be empty", "input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise _bad(f"input must have at most {MAX_EMBEDDING_INPUTS} items", "input")
    for text in texts:
        if not isinstance(text, str):
            raise _bad(
                "input must be a string or a list of strings; token arrays are not supported",
                "input",
            )
        if not text:
            raise _bad("input must not contain empty strings", "input")
    if request.dimensions is not None and not 1 <= request.dimensions <= MAX_DIMENSIONS:
        raise _bad(f"dimensions must be between 1 and {MAX_DIMENSIONS}", "dimensions")
    generation = GenerationRequest(
        kind="embedding",
        model=request.model,
        input=texts,
        dimensions=request.dimensions,
        stream=False,
    )
    return ParsedEmbedding(generation, request.encoding_format)


def _parsed(
    kind: Kind,
    request: _Common,
    data: dict[str, Any],
    max_tokens: int | None,
    *,
    messages: list[ChatMessage] | None = None,
    prompt: str = "",
) -> ParsedRequest:
    generation = GenerationRequest(
        kind=kind,
        model=request.model,
        messages=messages or [],
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=_stop_list(request.stop),
        seed=request.seed,
        extra=_extra(data, kind),
        stream=request.stream,
    )
    try:
        refuse_unhonoured(data)
        read_controls(generation.extra, kind)
    except ControlError as exc:
        raise _bad(exc.message, exc.param) from None
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    cocoon = data.get("cocoon") or {}
    if not isinstance(cocoon, dict):
        raise _bad("cocoon must be an object", "cocoon")
    return ParsedRequest(generation, request.stream, include_usage, cocoon)
