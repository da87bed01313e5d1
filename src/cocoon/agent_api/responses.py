"""The Responses API (`POST /v1/responses`) as a chat request, and its answer as a
Response object. Sans-IO.

The client node translates: the worker only ever sees a chat request, so the
sealed path, receipts and billing stay those of chat. `input` items become
chat messages (function calls an assistant turn's `tool_calls`, their outputs
`tool` turns), `instructions` a system message, function tools and
`text.format` the chat parameters; the conversation of a `previous_response_id`
comes from the client node's own store (`response_store`), since the client is
the one party that may hold conversation state. Parameters the path cannot
honour are refused by name.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from cocoon.agent_api.controls import SHOWN_CHARS, ControlError, shown
from cocoon.agent_api.responses_input import input_messages
from cocoon.inference import Usage

# Accepted and echoed, but with nothing to do on this path.
_ECHOED = ("metadata", "user", "store", "service_tier", "truncation", "max_tool_calls")
# Refused by name: features of OpenAI's hosted Responses API that no Cocoon path has.
_REFUSED = {
    "background": "background responses are not supported",
    "conversation": "conversations are not supported; use previous_response_id",
    "prompt": "stored prompts are not supported",
}
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# OpenAI's bounds on `metadata`: 16 pairs, keys of 64 characters, string values of
# 512. The metadata is echoed in every answer and kept with a stored response.
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
# The longest response id a request may name: ours are "resp_" and a request id of
# at most 128 characters.
MAX_RESPONSE_ID_CHARS = 256
# `include` values for output items no Cocoon answer has (hosted tools, images,
# reasoning): accepted, as there is nothing of theirs to include.
_NOTHING_TO_INCLUDE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
    }
)


class ResponsesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A checked /v1/responses body: the chat body it becomes, and what the answer echoes."""

    chat: dict[str, Any]
    # The conversation's messages as the worker sees them (without the instructions),
    # kept with the answer for a later previous_response_id.
    history: list[dict[str, Any]]
    stream: bool
    echo: dict[str, Any]
    # Whether output text carries its tokens' logprobs (`include`).
    logprobs: bool = False
    # Whether the answer is kept for a later previous_response_id (`store`, default true).
    store: bool = True


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise ControlError("tools must be an array", "tools")
    chat_tools = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise ControlError(
                f"tool type {shown(kind)} is not supported; only function tools are",
                f"tools[{index}].type",
            )
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
        chat_tools.append({"type": "function", "function": function})
    return chat_tools


def _tool_choice(choice: object) -> object:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _format(text: object) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise ControlError("text must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise ControlError("text.format must be an object", "text.format")
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return {"type": fmt.get("type")}


def _include_logprobs(include: object) -> bool:
    """Whether `include` asks for output text logprobs; ControlError for what it cannot."""
    if include is None:
        return False
    if not isinstance(include, list):
        raise ControlError("include must be an array of strings", "include")
    for index, value in enumerate(include):
        if not isinstance(value, str) or (
            value != LOGPROBS_INCLUDE and value not in _NOTHING_TO_INCLUDE
        ):
            raise ControlError(
                f"include value {shown(value)} is not supported", f"include[{index}]"
            )
    return LOGPROBS_INCLUDE in include


def previous_response_id(data: dict[str, Any]) -> str | None:
    """The body's previous_response_id, if any; ControlError if it is not an id."""
    value = data.get("previous_response_id")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_RESPONSE_ID_CHARS:
        raise ControlError(
            f"previous_response_id must be a response id (a string of 1-{MAX_RESPONSE_ID_CHARS}"
            " characters)",
            "previous_response_id",
        )
    return value


def _check_metadata(metadata: object) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS:
        raise ControlError(
            f"metadata must be an object of at most {MAX_METADATA_PAIRS} pairs", "metadata"
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS or not (
            isinstance(value, str) and len(value) <= MAX_METADATA_VALUE_CHARS
        ):
            raise ControlError(
                f"metadata keys must be at most {MAX_METADATA_KEY_CHARS} characters and values"
                f" strings of at most {MAX_METADATA_VALUE_CHARS}",
                "metadata",
            )


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ControlError(f"{name} must be a boolean", name)
    return value


def _check_reasoning(reasoning: object) -> None:
    # Nothing here reasons: no options, or effort "none", is honoured as it stands;
    # anything else would be ignored, so it is refused (as OpenAI refuses it for a
    # model that does not reason).
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise ControlError("reasoning must be an object", "reasoning")
    for key, value in reasoning.items():
        if value is not None and not (key == "effort" and value == "none"):
            name = f"reasoning.{str(key)[:SHOWN_CHARS]}"
            raise ControlError(f"{name} is not supported: the models served do not reason", name)


def parse_responses(
    data: dict[str, Any], previous: list[dict[str, Any]] | None
) -> ResponsesRequest:
    """The chat request of a /v1/responses body; ``previous``: the stored conversation of
    its previous_response_id. ControlError names the parameter at fault."""
    for name, why in _REFUSED.items():
        if data.get(name):
            raise ControlError(why, name)
    _check_reasoning(data.get("reasoning"))
    _check_metadata(data.get("metadata"))
    previous_response_id(data)
    stream = _flag(data, "stream", False)
    store = _flag(data, "store", True)
    top = data.get("top_logprobs")
    # top_logprobs alone asks for logprobs too (the OpenAI Agents SDK sends both).
    logprobs = _include_logprobs(data.get("include")) or bool(top)
    history = [*(previous or []), *input_messages(data.get("input"))]
    messages = list(history)
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ControlError("instructions must be a string", "instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {"model": data.get("model"), "messages": messages}
    chat["stream"] = stream
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if data.get(name) is not None:
            chat[name] = data[name]
    if data.get("max_output_tokens") is not None:
        chat["max_tokens"] = data["max_output_tokens"]
    if logprobs:
        chat["logprobs"] = True
        if top is not None:
            chat["top_logprobs"] = top
    if data.get("tools"):
        chat["tools"] = _tools(data["tools"])
    if data.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(data["tool_choice"])
    fmt = _format(data.get("text"))
    if fmt is not None and fmt["type"] != "text":
        chat["response_format"] = fmt
    if "cocoon" in data:
        chat["cocoon"] = data["cocoon"]
    echo = {
        "instructions": instructions,
        "tools": data.get("tools") or [],
        "tool_choice": data.get("tool_choice", "auto"),
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "temperature": data.get("temperature"),
        "top_p": data.get("top_p"),
        "max_output_tokens": data.get("max_output_tokens"),
        "previous_response_id": data.get("previous_response_id"),
        "text": data.get("text") or {"format": {"type": "text"}},
        "metadata": data.get("metadata") or {},
        "top_logprobs": top,
        **{name: data[name] for name in _ECHOED if name in data and name != "metadata"},
    }
    return ResponsesRequest(
        chat=chat,
        history=history,
        stream=chat["stream"],
        echo=echo,
        logprobs=logprobs,
        store=store,
    )


def response_id(request_id: str) -> str:
    return "resp_" + request_id


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def text_part(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An `output_text` content part; ``logprobs`` in chat's `logprobs.content` shape,
    which is the Responses one too."""
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return part


def item_status(finish_reason: str) -> str:
    """An output message's status once the answer ended: a message cut by
    max_output_tokens is `incomplete`, as OpenAI marks it."""
    return "incomplete" if finish_reason == "length" else "completed"


def message_item(
    text: str, status: str = "completed", logprobs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    content = [text_part(text, logprobs)] if text else []
    return {
        "type": "message",
        "id": "msg_" + secrets.token_hex(12),
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A chat tool call as a Responses `function_call` output item."""
    return {
        "type": "function_call",
        "id": "fc_" + secrets.token_hex(12),
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": call["function"]["arguments"],
        "status": status,
    }


def response_object(
    request_id: str,
    model: str,
    created: int,
    echo: dict[str, Any],
    output: list[dict[str, Any]],
    finish_reason: str | None,
    usage: Usage | None,
) -> dict[str, Any]:
    """The Response object; `finish_reason` None: still in progress."""
    status = "in_progress"
    incomplete = None
    if finish_reason == "length":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    elif finish_reason is not None:
        status = "completed"
    return {
        "id": response_id(request_id),
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "usage": usage_json(usage) if usage is not None else None,
        **echo,
    }


def output_history(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output as the chat messages a later turn's history holds."""
    text = "".join(
        part["text"] for item in output if item["type"] == "message" for part in item["content"]
    )
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in output
        if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]
