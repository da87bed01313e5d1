"""A /v1/responses `input` as chat messages, every item's shape checked. Sans-IO.

Items become chat messages (function calls an assistant turn's `tool_calls`,
their outputs `tool` turns); each field is checked here, where the item is
still named (`input[3].name`), because the chat parser downstream takes
`tool_calls` as they come and would pass a call named `5` to the worker.
"""

from __future__ import annotations

from typing import Any

from cocoon.agent_api.controls import FUNCTION_NAME, ControlError, shown

# The longest call id an item may carry: OpenAI's are about 30 characters, and
# an id is stored with the conversation and echoed in every later turn.
MAX_CALL_ID_CHARS = 256
_ROLES = ("user", "system", "developer", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")


def _text(content: object, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ControlError("content must be a string or a list of text parts", param)
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise ControlError(
                f"content part of type {shown(kind)} is not supported; only text is",
                f"{param}[{index}].type",
            )
        texts.append(part["text"])
    return "".join(texts)


def _call_id(item: dict[str, Any], param: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_CALL_ID_CHARS:
        raise ControlError(
            f"call_id must be a string of 1-{MAX_CALL_ID_CHARS} characters", f"{param}.call_id"
        )
    return call_id


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    name = item.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise ControlError(
            f"function name {shown(name)} must be 1-64 characters of a-z, A-Z, 0-9, _ and -",
            f"{param}.name",
        )
    arguments = item.get("arguments", "{}")
    if not isinstance(arguments, str):
        raise ControlError("arguments must be a string of JSON", f"{param}.arguments")
    return {
        "id": _call_id(item, param),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def input_messages(items: object) -> list[dict[str, Any]]:
    """`input` (a string or a list of items) as chat messages; ControlError names the
    item and field at fault."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise ControlError("input must be a string or a non-empty list of items", "input")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise ControlError("each input item must be an object", param)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise ControlError(f"unknown role {shown(role)}", f"{param}.role")
            text = _text(item.get("content"), f"{param}.content")
            messages.append({"role": "system" if role == "developer" else role, "content": text})
        elif kind == "function_call":
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            # Calls made together are one assistant turn in chat.
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _call_id(item, param),
                    "content": _text(output, f"{param}.output"),
                }
            )
        elif kind == "reasoning":
            continue  # nothing of it reaches a model that does not reason
        else:
            raise ControlError(f"input item type {shown(kind)} is not supported", f"{param}.type")
    return messages
