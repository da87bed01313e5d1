"""What a request asks of the shape of its answer: tools, response_format, logprobs.

Sans-IO and shared by both ends of the sealed path: the client gateway checks
these parameters (a 400 naming the one at fault) and learns which worker
*features* a request needs; the built-in engine reads them again from the
sealed request to build its grammar. They travel in `GenerationRequest.extra`
exactly as the app sent them, so that the `openai` backend passes them
through to its server untouched.

Features a worker announces per model (`WorkerAnnounce.features`):
- "tools": `tools` with `tool_choice` auto / required / a named function;
- "response_format": `json_object` and `json_schema` answers;
- "logprobs": `logprobs` / `top_logprobs`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from cocoon.agent_api.schema_limits import SchemaBudget, SchemaTooLarge

TOOLS = "tools"
RESPONSE_FORMAT = "response_format"
LOGPROBS = "logprobs"
FEATURES = (TOOLS, RESPONSE_FORMAT, LOGPROBS)

# OpenAI's bounds: function names, top_logprobs on chat (0-20) and the
# completions API's integer `logprobs` (0-5), and at most 128 tools.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
MAX_TOOLS = 128


class ControlError(ValueError):
    """A tools / response_format / logprobs parameter that is malformed; `param` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# What an error message may quote of a value the app sent: enough to recognise
# it, never the value whole (a 1 MiB name would come back as a 1 MiB error).
SHOWN_CHARS = 64


def shown(value: object) -> str:
    """``value`` for an error message: a scalar's repr cut to SHOWN_CHARS, a container
    named by its type (its repr could be the whole body)."""
    if isinstance(value, str):
        text = repr(value[: SHOWN_CHARS + 1])
    elif value is None or isinstance(value, bool | int | float):
        text = repr(value)
    else:
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


class FunctionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A function the model may call: its name, what it does, its arguments' JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of `tools` (OpenAI has only function tools on chat)."""

    type: Literal["function"]
    function: FunctionSpec


class _NamedFunction(msgspec.Struct, frozen=True):
    name: str


class _NamedToolChoice(msgspec.Struct, frozen=True):
    type: Literal["function"]
    function: _NamedFunction


class JsonSchemaFormat(msgspec.Struct, frozen=True, kw_only=True):
    """`response_format.json_schema`: the schema the answer must follow."""

    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, frozen=True, kw_only=True):
    """`response_format`: text (the default), any JSON object, or JSON of a schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None


class OutputControls(msgspec.Struct, frozen=True, kw_only=True):
    """A request's tools, response format and logprobs, checked."""

    tools: list[ToolSpec] = []
    # "auto", "none", "required", or the name of the one function to call.
    tool_choice: str = "auto"
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = ResponseFormat()
    logprobs: bool = False
    # How many of the most likely tokens to list at each position (0: none).
    top_logprobs: int = 0

    def offered_tools(self) -> list[ToolSpec]:
        """The tools the model may call now: none, all, or the named one."""
        if self.tool_choice == "none":
            return []
        if self.tool_choice in ("auto", "required"):
            return list(self.tools)
        return [t for t in self.tools if t.function.name == self.tool_choice]

    def features(self) -> frozenset[str]:
        """The worker features an answer to these controls needs."""
        needed = set()
        if self.tools and self.tool_choice != "none":
            needed.add(TOOLS)
        if self.response_format.type != "text":
            needed.add(RESPONSE_FORMAT)
        if self.logprobs:
            needed.add(LOGPROBS)
        return frozenset(needed)


def _convert(value: object, cls: type[Any], param: str) -> Any:
    try:
        return msgspec.convert(value, cls)
    except msgspec.ValidationError as exc:
        raise ControlError(f"invalid {param}: {exc}", param) from None


def _tools(value: object, budget: SchemaBudget) -> list[ToolSpec]:
    if not isinstance(value, list):
        raise ControlError("tools must be an array of function tools", "tools")
    if len(value) > MAX_TOOLS:
        raise ControlError(f"at most {MAX_TOOLS} tools are allowed", "tools")
    tools: list[ToolSpec] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        param = f"tools[{index}]"
        if isinstance(item, dict) and item.get("type") not in (None, "function"):
            raise ControlError(
                f"tool type {shown(item.get('type'))} is not supported; only function tools are",
                f"{param}.type",
            )
        tool: ToolSpec = _convert(item, ToolSpec, param)
        name = tool.function.name
        if not FUNCTION_NAME.match(name):
            raise ControlError(
                f"function name {shown(name)} must be 1-64 characters of a-z, A-Z, 0-9, _ and -",
                f"{param}.function.name",
            )
        if name in names:
            raise ControlError(
                f"function name {shown(name)} appears twice", f"{param}.function.name"
            )
        names.add(name)
        parameters = tool.function.parameters
        if parameters is not None and parameters.get("type", "object") != "object":
            raise ControlError(
                "function parameters must be a JSON schema of type object",
                f"{param}.function.parameters",
            )
        _check_schema(budget, parameters, f"{param}.function.parameters")
        tools.append(tool)
    return tools


def _check_schema(budget: SchemaBudget, schema: object, param: str) -> None:
    try:
        budget.check(schema)
    except SchemaTooLarge as exc:
        raise ControlError(str(exc), param) from None


def _tool_choice(value: object, tools: list[ToolSpec]) -> str:
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise ControlError(
                "tool_choice must be 'auto', 'none', 'required' or a named function",
                "tool_choice",
            )
        choice = value
    else:
        choice = _convert(value, _NamedToolChoice, "tool_choice").function.name
        if choice not in {t.function.name for t in tools}:
            raise ControlError(
                f"tool_choice names {shown(choice)}, which is not in tools", "tool_choice"
            )
    if choice != "none" and not tools:
        raise ControlError("tool_choice is only allowed when tools are specified", "tool_choice")
    return choice


def _logprobs(extra: dict[str, object], kind: str) -> tuple[bool, int]:
    value = extra.get("logprobs")
    top = extra.get("top_logprobs")
    if kind == "completion":
        # The completions API: logprobs is how many top tokens to list (0-5).
        if value is None:
            return False, 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ControlError("logprobs must be an integer on completions", "logprobs")
        if not 0 <= value <= MAX_COMPLETION_LOGPROBS:
            raise ControlError(
                f"logprobs must be between 0 and {MAX_COMPLETION_LOGPROBS}", "logprobs"
            )
        return True, value
    if value is not None and not isinstance(value, bool):
        raise ControlError("logprobs must be a boolean", "logprobs")
    if top is None:
        return bool(value), 0
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise ControlError(
            f"top_logprobs must be an integer between 0 and {MAX_TOP_LOGPROBS}", "top_logprobs"
        )
    if not value:
        raise ControlError("top_logprobs requires logprobs to be true", "top_logprobs")
    return True, top


def read_controls(extra: dict[str, object], kind: str = "chat") -> OutputControls:
    """The checked controls of a request's pass-through parameters; ControlError if malformed."""
    if kind != "chat":
        for name in ("tools", "tool_choice", "parallel_tool_calls", "response_format"):
            if name in extra:
                raise ControlError(f"{name} is a chat completions parameter", name)
    budget = SchemaBudget()
    tools = _tools(extra["tools"], budget) if extra.get("tools") is not None else []
    choice = _tool_choice(extra["tool_choice"], tools) if "tool_choice" in extra else "auto"
    parallel = extra.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise ControlError("parallel_tool_calls must be a boolean", "parallel_tool_calls")
    fmt = ResponseFormat()
    if extra.get("response_format") is not None:
        fmt = _convert(extra["response_format"], ResponseFormat, "response_format")
        if fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise ControlError(
                    "response_format of type json_schema needs a json_schema object",
                    "response_format.json_schema",
                )
            schema = fmt.json_schema.schema
            if schema is not None and schema.get("type", "object") != "object":
                raise ControlError(
                    "response_format.json_schema.schema must describe a JSON object",
                    "response_format.json_schema.schema",
                )
            _check_schema(budget, schema, "response_format.json_schema.schema")
    logprobs, top = _logprobs(extra, kind)
    return OutputControls(
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=fmt,
        logprobs=logprobs,
        top_logprobs=top,
    )


def needed_features(extra: dict[str, object], kind: str = "chat") -> frozenset[str]:
    """The worker features a request (already checked) needs; cheap, on every request."""
    if not extra:
        return frozenset()
    return read_controls(extra, kind).features()


# OpenAI parameters that no path through Cocoon honours: refused by name, never
# ignored (an app that sends them expects them to act). Value: what to say.
_UNHONOURED = {
    "functions": "the legacy functions parameter is not supported; use tools",
    "function_call": "the legacy function_call parameter is not supported; use tool_choice",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}


def refuse_unhonoured(data: dict[str, Any]) -> None:
    """ControlError naming the first parameter of ``data`` that Cocoon cannot honour."""
    for name, why in _UNHONOURED.items():
        if data.get(name) is not None:
            raise ControlError(why, name)
    modalities = data.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise ControlError("only the text modality is supported", "modalities")
    if data.get("store"):
        raise ControlError(
            "store is not supported: answers are sealed and kept by nobody on the path", "store"
        )
