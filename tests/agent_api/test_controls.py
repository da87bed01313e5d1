"""Tools, response_format and logprobs parameters, checked: no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from cocoon.agent_api.controls import (
    ControlError,
    needed_features,
    read_controls,
    refuse_unhonoured,
)

F = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
G = {"type": "function", "function": {"name": "g"}}


def param_of(extra: dict[str, Any], kind: str = "chat") -> str:
    with pytest.raises(ControlError) as caught:
        read_controls(extra, kind)
    return caught.value.param


def test_defaults_need_nothing() -> None:
    controls = read_controls({})
    assert controls.tool_choice == "auto" and controls.parallel_tool_calls
    assert controls.features() == frozenset() and needed_features({}) == frozenset()


def test_tool_choice_decides_the_tools_offered() -> None:
    assert [t.function.name for t in read_controls({"tools": [F, G]}).offered_tools()] == [
        "f",
        "g",
    ]
    named = read_controls(
        {"tools": [F, G], "tool_choice": {"type": "function", "function": {"name": "g"}}}
    )
    assert named.tool_choice == "g" and [t.function.name for t in named.offered_tools()] == ["g"]
    none = read_controls({"tools": [F], "tool_choice": "none"})
    assert none.offered_tools() == [] and none.features() == frozenset()
    assert read_controls({"tools": [F], "tool_choice": "required"}).features() == {"tools"}


def test_features_add_up() -> None:
    extra = {
        "tools": [F],
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
    }
    assert needed_features(extra) == {"tools", "response_format", "logprobs"}
    assert needed_features({"logprobs": 3}, "completion") == {"logprobs"}
    assert needed_features({"response_format": {"type": "text"}}) == frozenset()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": F}, "tools"),
        ({"tools": [F] * 129}, "tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"tools": [F, F]}, "tools[1].function.name"),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            },
            "tools[0].function.parameters",
        ),
        ({"tools": [F], "tool_choice": "always"}, "tool_choice"),
        (
            {"tools": [F], "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [F], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"type": "array"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": True}, "top_logprobs"),
    ],
)
def test_malformed_controls_name_their_parameter(extra: dict[str, Any], param: str) -> None:
    assert param_of(extra) == param


def test_completions_take_an_integer_logprobs_and_no_chat_parameters() -> None:
    controls = read_controls({"logprobs": 3}, "completion")
    assert controls.logprobs and controls.top_logprobs == 3
    assert read_controls({"logprobs": 0}, "completion").top_logprobs == 0
    assert param_of({"logprobs": 6}, "completion") == "logprobs"
    assert param_of({"logprobs": True}, "completion") == "logprobs"
    assert param_of({"tools": [F]}, "completion") == "tools"
    assert param_of({"response_format": {"type": "json_object"}}, "completion") == "response_format"


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"functions": []}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"audio": {}}, "audio"),
        ({"prediction": {}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"store": True}, "store"),
    ],
)
def test_unhonoured_parameters_are_refused_by_name(data: dict[str, Any], param: str) -> None:
    with pytest.raises(ControlError) as caught:
        refuse_unhonoured(data)
    assert caught.value.param == param


def test_harmless_values_of_unhonoured_parameters_pass() -> None:
    refuse_unhonoured({"modalities": ["text"], "store": False, "functions": None})
