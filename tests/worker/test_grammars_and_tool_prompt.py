"""The built-in engine's grammars and tool prompting, without a model: no GGUF, no sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cocoon.agent_api.controls import read_controls
from cocoon.inference import ChatMessage
from cocoon.worker.backends import grammars
from cocoon.worker.backends.grammars import (
    ENTRY,
    MAX_CALLS,
    call_key,
    grammar_for,
    parse_tool_call,
    split_call,
)
from cocoon.worker.backends.tool_prompt import (
    answered_calls,
    template_messages,
    template_renders_tools,
)

llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def compiles(grammar: str) -> None:
    compiled = llama_grammar.LlamaGrammar.from_string(grammar, verbose=False)
    assert compiled is not None
    assert f"{ENTRY} ::=" in grammar


def test_no_controls_is_free_text() -> None:
    assert grammar_for(read_controls({})) == (None, "text")
    assert grammar_for(read_controls({"tools": [WEATHER], "tool_choice": "none"})) == (
        None,
        "text",
    )


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_forced_call_has_no_text_branch(choice: object) -> None:
    grammar, mode = grammar_for(read_controls({"tools": [WEATHER, TIME], "tool_choice": choice}))
    assert mode == "tool" and grammar is not None
    assert "cocoon-text" not in grammar and '"<tool_call>\\n"' in grammar
    compiles(grammar)


def test_auto_allows_text_that_does_not_start_a_call() -> None:
    grammar, mode = grammar_for(read_controls({"tools": [WEATHER]}))
    assert mode == "auto" and grammar is not None
    assert f"{ENTRY} ::= cocoon-calls | cocoon-text" in grammar
    assert "cocoon-text ::= [^<]" in grammar
    compiles(grammar)


def test_parallel_tool_calls_allows_several_calls_and_false_exactly_one() -> None:
    parallel, _ = grammar_for(read_controls({"tools": [WEATHER], "tool_choice": "required"}))
    single, _ = grammar_for(
        read_controls({"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False})
    )
    assert parallel is not None and single is not None
    assert f"{{0,{MAX_CALLS - 1}}}" in parallel
    assert "{0," not in single
    compiles(parallel)
    compiles(single)


def test_a_named_function_offers_only_it() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    grammar, _ = grammar_for(read_controls({"tools": [WEATHER, TIME], "tool_choice": named}))
    assert grammar is not None and "get_time" in grammar and "get_weather" not in grammar


def test_response_formats() -> None:
    obj, mode = grammar_for(read_controls({"response_format": {"type": "json_object"}}))
    assert mode == "text" and obj is not None
    compiles(obj)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    grammar, _ = grammar_for(read_controls({"response_format": fmt}))
    assert grammar is not None and '"\\"n\\""' in grammar
    compiles(grammar)


def test_text_grammar_compiles() -> None:
    compiles(grammars.text_grammar())


def test_a_schema_the_converter_cannot_take_is_a_grammar_error() -> None:
    with pytest.raises(grammars.GrammarError):
        grammars.schema_grammar({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>', ("f", '{"a": 1}')),
        ('  <tool_call>{"name": "f"}</tool_call>\n', ("f", "{}")),
        ('<tool_call>\n{"name": "f", "arguments": {"a": "é"}}\n</tool_call>', ("f", '{"a": "é"}')),
        ('<tool_call>\n{"name": "f", "arguments": {"a": 1}', None),
        ("<tool_call>\nnot json\n</tool_call>", None),
        ('<tool_call>\n{"arguments": {}}\n</tool_call>', None),
        ("<tool_call>[1]</tool_call>", None),
        ("plain text", None),
    ],
)
def test_parse_tool_call(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_tool_call(text) == expected


def test_split_call_takes_whole_envelopes_one_at_a_time() -> None:
    one = b'<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    assert split_call(one[:-3]) is None
    assert split_call(one + b"\n<tool_") == (one, b"\n<tool_")


def test_call_key_ignores_argument_formatting() -> None:
    assert call_key("f", '{"b": 1, "a": 2}') == call_key("f", '{"a":2,"b":1}')
    assert call_key("f", "{}") != call_key("g", "{}")
    assert call_key("f", "not json") == ("f", "not json")


def _messages(*raw: dict[str, Any]) -> list[ChatMessage]:
    return [msgspec.convert(m, ChatMessage) for m in raw]


CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
HISTORY = _messages(
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "Sunny."},
)
TOOLS = read_controls({"tools": [WEATHER]}).tools


def test_written_out_for_a_template_without_tools() -> None:
    rendered, tools = template_messages(HISTORY, TOOLS, native=False)
    assert tools is None
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    system = str(rendered[0]["content"])
    assert system.startswith("Be brief.\n\n") and '"name": "get_weather"' in system
    assert rendered[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    assert rendered[3]["content"] == "<tool_response>\nSunny.\n</tool_response>"
    # Without tools offered (tool_choice none, or an answer in text) no block is added.
    bare, _ = template_messages(HISTORY[1:], [], native=False)
    assert bare[0] == {"role": "user", "content": "Weather in Paris?"}


# A template of the kind Qwen2.5 and Hermes ship: it renders `tools`, the
# assistant's `tool_calls` (arguments as a mapping) and `tool` turns itself.
NATIVE_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}:"
    "{{ t.function.parameters | tojson }};{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}[result {{ m.tool_call_id }}] {{ m.content }}\n"
    "{% elif m.tool_calls %}[{{ m.role }}]{% for c in m.tool_calls %} call {{ c.function.name }}"
    "{{ c.function.arguments | tojson }}{% endfor %}{{ '\\n' }}"
    "{% else %}[{{ m.role }}] {{ m.content }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_a_template_that_renders_tools_gets_them_as_they_are() -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    assert template_renders_tools(NATIVE_TEMPLATE)
    assert not template_renders_tools("{% for m in messages %}{{ m.content }}{% endfor %}")
    messages, tools = template_messages(HISTORY, TOOLS, native=True)
    assert tools is not None and tools[0]["function"]["name"] == "get_weather"
    formatter = Jinja2ChatFormatter(template=NATIVE_TEMPLATE, eos_token="", bos_token="")
    prompt = formatter(messages=messages, tools=tools).prompt
    assert prompt == (
        '<tools>get_weather:{"type": "object", "properties": {"city": {"type": "string"}},'
        ' "required": ["city"]};</tools>\n'
        "[system] Be brief.\n"
        "[user] Weather in Paris?\n"
        '[assistant] call get_weather{"city": "Paris"}\n'
        "[result c1] Sunny.\n"
        "[assistant]"
    )


def test_answered_calls_are_those_with_a_result() -> None:
    unanswered = {**CALL, "id": "c2", "function": {"name": "get_time", "arguments": "{}"}}
    history = _messages(
        {"role": "user", "content": "?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL, unanswered]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny."},
    )
    assert answered_calls(history) == {call_key("get_weather", '{"city":"Paris"}')}
    assert answered_calls(HISTORY[:3]) == frozenset()
