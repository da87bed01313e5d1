"""A chat with tools as the built-in engine's chat template reads it. Sans-IO.

Two cases, decided by the model's own template (its GGUF metadata):

- The template renders `tools` (Qwen2.5, Hermes, Llama 3.1, SmolLM3 ...): the
  tools, the assistant turns' `tool_calls` and the `tool` turns go to it as
  they are; the model is prompted in the format it was trained on.
- It does not (SmolLM2-135M, the default): the tools are described in a system
  block in the Hermes format, past calls are written back as the envelopes the
  model would have produced (`grammars.TOOL_CALL_OPEN`), and tool results as
  user turns in `<tool_response>` tags, so that no role the template does not
  know reaches it.

Either way the answer is sampled under `grammars`' envelope, so that what the
model emits parses whatever its training.

A model of the second kind was never trained to choose between calling and
answering: shown its own call and the call's result, it calls again, the same
call, and an agent loops until its turn limit. So under `tool_choice: auto`
the engine takes a repeat of an answered call (`answered_calls`) as that
model's cue to answer, and samples text instead.
"""

from __future__ import annotations

import json
from typing import Any

from cocoon.agent_api.controls import ToolSpec
from cocoon.inference import ChatMessage
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.grammars import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, call_key

_TOOLS_HEADER = (
    "You may call a function to help with the user's request. The functions you may"
    " call are described in JSON in <tools></tools>:\n<tools>\n"
)
_TOOLS_FOOTER = (
    "\n</tools>\nTo call a function, answer with nothing but a JSON object with the"
    " function's name and arguments inside <tool_call></tool_call> tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <arguments-object>}\n</tool_call>'
)


def template_renders_tools(template: str) -> bool:
    """Whether a chat template has a tool format of its own (it reads `tools`)."""
    return "tools" in template


def tool_json(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description:
        function["description"] = tool.function.description
    function["parameters"] = tool.function.parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def tools_system_block(tools: list[ToolSpec]) -> str:
    listed = "\n".join(json.dumps(tool_json(tool), ensure_ascii=False) for tool in tools)
    return _TOOLS_HEADER + listed + _TOOLS_FOOTER


def _text(content: str | list[dict[str, object]] | None) -> str:
    if not isinstance(content, list):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BackendError("invalid_request", "this model reads text parts only", 400)
        texts.append(str(part["text"]))
    return "".join(texts)


def _calls(message: ChatMessage) -> list[tuple[str, str, Any]]:
    """(id, name, arguments as JSON) of an assistant turn's calls."""
    calls = []
    for call in message.tool_calls or []:
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BackendError("invalid_request", "a tool call in messages has no function", 400)
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = arguments  # as the app wrote it: the model sees its own past text
        calls.append((str(call.get("id", "")), function["name"], parsed))
    return calls


def _native(message: ChatMessage) -> dict[str, object]:
    body: dict[str, object] = {"role": message.role, "content": _text(message.content)}
    if message.name is not None:
        body["name"] = message.name
    if message.tool_calls:
        # Templates read arguments as a mapping (`arguments | tojson`), not as text.
        body["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}
            for cid, name, arguments in _calls(message)
        ]
    if message.tool_call_id is not None:
        body["tool_call_id"] = message.tool_call_id
    return body


def _written_out(message: ChatMessage) -> dict[str, object]:
    if message.role == "tool":
        return {
            "role": "user",
            "content": f"<tool_response>\n{_text(message.content)}\n</tool_response>",
        }
    content = _text(message.content)
    if message.tool_calls:
        envelopes = [
            TOOL_CALL_OPEN
            + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
            + TOOL_CALL_CLOSE
            for _cid, name, arguments in _calls(message)
        ]
        content = "\n".join(([content] if content else []) + envelopes)
    body: dict[str, object] = {"role": message.role, "content": content}
    if message.name is not None:
        body["name"] = message.name
    return body


def template_messages(
    messages: list[ChatMessage], tools: list[ToolSpec], native: bool
) -> tuple[list[dict[str, object]], list[dict[str, Any]] | None]:
    """The messages (and tools, for a template that renders them) to render."""
    if native:
        return [_native(m) for m in messages], [tool_json(t) for t in tools] or None
    rendered = [_written_out(m) for m in messages]
    if tools:
        block = tools_system_block(tools)
        if rendered and rendered[0]["role"] == "system":
            first = rendered[0]
            rendered[0] = {**first, "content": f"{first['content']}\n\n{block}"}
        else:
            rendered.insert(0, {"role": "system", "content": block})
    return rendered, None


def answered_calls(messages: list[ChatMessage]) -> frozenset[tuple[str, str]]:
    """The calls of the conversation whose results it holds, as `grammars.call_key`s."""
    results = {m.tool_call_id for m in messages if m.role == "tool"}
    answered = set()
    for message in messages:
        if message.role != "assistant" or not message.tool_calls:
            continue
        for cid, name, arguments in _calls(message):
            if cid in results:
                text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                answered.add(call_key(name, text))
    return frozenset(answered)
