"""Request shapes that third-party clients send, captured from them, parsed as
OpenAI would read them (docs/agents.md, "Tried with")."""

from __future__ import annotations

import json

import pytest

from cocoon.openai_api import OpenAIError, parse_chat, parse_completion

USER = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "additionalProperties": False,
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "type": "object",
        },
        "strict": True,
    },
}

# Every top-level parameter a typed SDK (Java, .NET, Go, Spring AI) may send as
# null when the app left it unset.
NULLABLE = [
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "functions",
    "function_call",
    "audio",
    "modalities",
    "prediction",
    "metadata",
    "store",
    "service_tier",
    "reasoning_effort",
    "web_search_options",
]


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_top_level_nulls_read_as_left_out() -> None:
    plain = parse_chat(body(model="m", messages=USER))
    nulls = parse_chat(body(model="m", messages=USER, **dict.fromkeys(NULLABLE)))
    assert nulls == plain
    assert not nulls.stream and nulls.generation.extra == {}


def test_a_null_does_not_hide_a_bad_value_elsewhere() -> None:
    with pytest.raises(OpenAIError) as err:
        parse_chat(body(model="m", messages=USER, stream=None, n=2))
    assert err.value.param == "n"


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [], "tool_choice": "auto"},
        {"tool_choice": "auto", "parallel_tool_calls": False},
        {"tools": [], "tool_choice": "none", "parallel_tool_calls": True},
    ],
)
def test_an_agent_without_tools_may_still_say_auto(fields: dict[str, object]) -> None:
    parsed = parse_chat(body(model="m", messages=USER, **fields))
    # Dropped, not passed on: OpenAI itself (behind an `openai` worker) refuses
    # tool_choice and parallel_tool_calls without tools.
    assert parsed.generation.extra == {}


def test_a_tool_choice_that_needs_tools_still_needs_them() -> None:
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        with pytest.raises(OpenAIError) as err:
            parse_chat(body(model="m", messages=USER, tools=[], tool_choice=choice))
        assert err.value.status == 400 and err.value.param == "tool_choice"


def test_tool_parameters_stay_chat_only() -> None:
    with pytest.raises(OpenAIError) as err:
        parse_completion(body(model="m", prompt="hi", tool_choice="auto"))
    assert err.value.param == "tool_choice"


def test_pydantic_ai_turn_after_a_tool_result() -> None:
    # pydantic-ai 2.x (OpenAIChatModel): strict tools, max_completion_tokens,
    # content null beside tool_calls, the tool's answer as a plain string.
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees."},
    ]
    parsed = parse_chat(
        body(
            model="m",
            messages=messages,
            max_completion_tokens=60,
            stream=True,
            stream_options={"include_usage": True},
            temperature=0,
            tool_choice="auto",
            parallel_tool_calls=False,
            seed=1,
            tools=[WEATHER],
        )
    )
    g = parsed.generation
    assert g.max_tokens == 60 and g.seed == 1 and parsed.include_usage
    assert g.extra["tools"] == [WEATHER] and g.extra["parallel_tool_calls"] is False
    assert [m.role for m in g.messages] == ["system", "user", "assistant", "tool"]
