"""llama.cpp grammars (GBNF) for what a request constrains: a tool call, a JSON answer.

Sans-IO: text in, grammar text out; the llama backend compiles it. A small
model (the default SmolLM2-135M) does not follow a tool-calling format on its
own, so the built-in engine constrains the sampler instead: a required or
named call can only come out as the envelope below, with arguments that
follow the function's JSON schema, and a `json_schema` answer can only be JSON
of that schema.

The tool-call envelope is the Hermes one (Qwen2.5, Hermes, SmolLM3 and others
are trained on it), whichever template the model has:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

With `parallel_tool_calls` (OpenAI's default) an answer may hold up to
`MAX_CALLS` such calls, one per line; without it exactly one. With
`tool_choice: auto` the grammar lets the answer be either calls or plain text
that does not start with "<": the model chooses, and a call it starts is
always well formed. JSON schemas become GBNF through llama.cpp's own
converter (`json_schema_to_gbnf`), whose whitespace is bounded (a small model
under an unbounded `ws*` can emit newlines until max_tokens). One grammar
holds one schema's rules under `root`; the rule that starts the sampler is
`ENTRY`, so that a tool call can wrap the schema's `root` without renaming it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from cocoon.agent_api.controls import OutputControls, ToolSpec

# The rule the sampler starts from (llama.cpp's LlamaGrammar._root).
ENTRY = "cocoon-entry"
TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"
# Calls in one answer with parallel_tool_calls: a bound keeps the grammar finite
# and a model that repeats itself from running to max_tokens on calls.
MAX_CALLS = 8


class GrammarError(ValueError):
    """A schema the grammar converter cannot turn into a grammar."""


def _escape(literal: str) -> str:
    return json.dumps(literal)  # GBNF string literals escape as JSON strings do


@functools.lru_cache(maxsize=64)
def _schema_gbnf(schema_json: str, order: tuple[str, ...]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(schema_json, list(order) or None))
    except (AssertionError, KeyError, ValueError, TypeError, NotImplementedError) as exc:
        raise GrammarError(str(exc) or type(exc).__name__) from exc


def schema_grammar(schema: dict[str, Any]) -> str:
    """A grammar whose every sentence is JSON valid under ``schema``."""
    gbnf = _schema_gbnf(json.dumps(schema, sort_keys=True), ())
    return f"{gbnf}\n{ENTRY} ::= root\n"


def json_object_grammar() -> str:
    """Any JSON object (`response_format: json_object`)."""
    return schema_grammar({"type": "object"})


def envelope_schema(tool: ToolSpec) -> dict[str, Any]:
    """The JSON schema of one call of ``tool``: its name, and arguments of its schema."""
    parameters = tool.function.parameters or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": tool.function.name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def text_grammar() -> str:
    """Plain text that does not begin with "<" (a call's first character)."""
    return f"{ENTRY} ::= cocoon-text\ncocoon-text ::= [^<] [^\\x00]*\n"


def tool_call_grammar(tools: list[ToolSpec], *, allow_text: bool, parallel: bool = False) -> str:
    """Calls of ``tools`` in the envelope (one, or with ``parallel`` up to MAX_CALLS, a
    line apart); with ``allow_text`` plain text instead."""
    envelopes = [envelope_schema(tool) for tool in tools]
    schema = envelopes[0] if len(envelopes) == 1 else {"oneOf": envelopes}
    gbnf = _schema_gbnf(json.dumps(schema, sort_keys=True), ("name", "arguments"))
    call = f"{_escape(TOOL_CALL_OPEN)} root {_escape(TOOL_CALL_CLOSE)}"
    calls = f"{call} ({_escape(chr(10))} {call}){{0,{MAX_CALLS - 1}}}" if parallel else call
    rules = f"{gbnf}\ncocoon-calls ::= {calls}\n"
    if not allow_text:
        return f"{rules}{ENTRY} ::= cocoon-calls\n"
    # Text may not start with "<": that first character is the model's choice.
    return f"{rules}{ENTRY} ::= cocoon-calls | cocoon-text\ncocoon-text ::= [^<] [^\\x00]*\n"


def grammar_for(controls: OutputControls) -> tuple[str | None, str]:
    """The grammar a request's controls need (None: free text), and its mode:
    "text", "tool" (a call is forced) or "auto" (a call or text)."""
    tools = controls.offered_tools()
    if tools:
        forced = controls.tool_choice != "auto"
        grammar = tool_call_grammar(
            tools, allow_text=not forced, parallel=controls.parallel_tool_calls
        )
        return grammar, "tool" if forced else "auto"
    fmt = controls.response_format
    if fmt.type == "json_object":
        return json_object_grammar(), "text"
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        return schema_grammar(fmt.json_schema.schema or {"type": "object"}), "text"
    return None, "text"


def parse_tool_call(text: str) -> tuple[str, str] | None:
    """The name and JSON arguments of a whole enveloped call, or None if ``text`` is not one
    (a call that max_tokens cut short)."""
    body = text.strip()
    if not (body.startswith("<tool_call>") and body.endswith("</tool_call>")):
        return None
    inner = body[len("<tool_call>") : -len("</tool_call>")]
    try:
        call = json.loads(inner)
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    arguments = call.get("arguments", {})
    return call["name"], json.dumps(arguments, ensure_ascii=False)


def split_call(held: bytes) -> tuple[bytes, bytes] | None:
    """The first whole envelope of ``held`` and what follows it; None while none is closed."""
    end = held.find(b"</tool_call>")
    if end < 0:
        return None
    end += len(b"</tool_call>")
    return held[:end], held[end:]


def call_key(name: str, arguments: str) -> tuple[str, str]:
    """A call as a comparable pair: its name and its arguments' canonical JSON."""
    try:
        canonical = json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        canonical = arguments
    return name, canonical
