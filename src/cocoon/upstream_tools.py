"""The in-project upstream's deterministic tool mode: what a server that does tools answers.

Tests point the `openai` backend at `cocoon.upstream` to prove that tools,
tool results and structured output pass through the sealed path and come
back as the server sent them. So the upstream answers like a tool-calling
server, deterministically:

- a chat request whose tools may be called (tool_choice auto, required or a
  named function) and whose last message is not a tool's result: one call of
  the named (else the first) function, with arguments made from its schema
  (each required property: an enum's first value, a string "synthetic", 1, 1.5,
  true, [] or {}); streamed as OpenAI does, the call's id and name first, then
  its arguments in two fragments;
- after a tool's result, or with tool_choice none: the synthetic text;
- `response_format` json_object / json_schema: a JSON object made the same way;
- `logprobs` (chat) or an integer `logprobs` (completions): each text token's
  log probability, made from its text (`token_logprob`): the sampled token is
  the most likely, `top_logprobs` alternatives follow in falling order, and the
  probabilities of a position sum to less than one, as a model's do.
Sans-IO: `planned_call`, `json_answer` and `token_logprob` build the answer;
upstream.py writes it.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from cocoon.agent_api.controls import OutputControls, read_controls
from cocoon.inference import GenerationRequest, TokenLogprob, ToolCallDelta, TopLogprob


def _value(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return example_object(schema)
    return {
        "string": "synthetic",
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "null": None,
    }.get(kind, "synthetic")


def example_object(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON object valid under a simple object schema: its required properties, each
    with a fixed value of its type."""
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    return {name: _value(properties.get(name) or {}) for name in required}


def _controls(request: GenerationRequest) -> OutputControls | None:
    if request.kind != "chat" or not request.extra:
        return None
    return read_controls(request.extra, request.kind)


def planned_call(request: GenerationRequest) -> ToolCallDelta | None:
    """The tool call this server answers ``request`` with, or None for text."""
    controls = _controls(request)
    if controls is None:
        return None
    tools = controls.offered_tools()
    if not tools or (request.messages and request.messages[-1].role == "tool"):
        return None
    function = tools[0].function
    arguments = json.dumps(example_object(function.parameters or {}))
    digest = hashlib.blake2b(
        json.dumps([m.content for m in request.messages], default=str).encode(), digest_size=12
    )
    return ToolCallDelta(id=f"call_{digest.hexdigest()}", name=function.name, arguments=arguments)


def json_answer(request: GenerationRequest) -> str | None:
    """The JSON text this server answers a structured-output request with, or None."""
    controls = _controls(request)
    if controls is None:
        return None
    fmt = controls.response_format
    if fmt.type == "json_object":
        return json.dumps({"answer": "synthetic"})
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        return json.dumps(example_object(fmt.json_schema.schema or {}))
    return None


def call_events(call: ToolCallDelta) -> list[dict[str, Any]]:
    """The streamed deltas of one call: id and name first, then the arguments in two."""
    half = len(call.arguments) // 2
    first = {
        "index": 0,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    rest = [
        {"index": 0, "function": {"arguments": part}}
        for part in (call.arguments[:half], call.arguments[half:])
    ]
    return [first, *rest]


def call_message(call: ToolCallDelta) -> dict[str, Any]:
    """The call as a whole answer's `message.tool_calls` entry."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def asked_logprobs(request: GenerationRequest) -> int | None:
    """How many alternatives to list per token when ``request`` asks for logprobs, else None."""
    if not request.extra:
        return None
    controls = read_controls(request.extra, request.kind)
    return controls.top_logprobs if controls.logprobs else None


def token_logprob(token: str, top: int) -> TokenLogprob:
    """A deterministic log probability for ``token``, with ``top`` alternatives.

    The token gets probability p in [0.5, 0.9) from a hash of its text; the i-th
    alternative (1-p)/2^(i+1): falling, below p, and together under 1 - p."""
    digest = hashlib.blake2b(token.encode(), digest_size=2).digest()
    p = 0.5 + 0.4 * int.from_bytes(digest, "big") / 65536
    raw = token.encode()
    listed = [TopLogprob(token, math.log(p), raw)] if top > 0 else []
    for i in range(max(0, top - 1)):
        other = f"{token}~{i}"
        listed.append(TopLogprob(other, math.log((1 - p) / 2 ** (i + 1)), other.encode()))
    return TokenLogprob(token=token, logprob=math.log(p), raw=raw, top=listed)
