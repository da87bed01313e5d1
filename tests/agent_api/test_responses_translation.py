"""The Responses API as chat, and its answer as a Response and its events: no sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cocoon.agent_api.controls import ControlError
from cocoon.agent_api.responses import (
    call_item,
    input_messages,
    item_status,
    message_item,
    output_history,
    parse_responses,
    response_object,
)
from cocoon.agent_api.responses_stream import ResponseEvents
from cocoon.inference import AnswerChunk, TokenLogprob, ToolCallDelta, TopLogprob, Usage

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def parse(**body: Any) -> Any:
    return parse_responses({"model": "m", "input": "hi", **body}, None)


def refused(**body: Any) -> str:
    with pytest.raises(ControlError) as caught:
        parse(**body)
    return caught.value.param


def test_a_string_input_is_one_user_turn() -> None:
    assert input_messages("hello") == [{"role": "user", "content": "hello"}]


def test_message_items_keep_roles_and_join_text_parts() -> None:
    messages = input_messages(
        [
            {"role": "developer", "content": "be brief"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        ]
    )
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "ok"},
    ]


def test_calls_made_together_are_one_assistant_turn_and_outputs_tool_turns() -> None:
    messages = input_messages(
        [
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "cold"}],
            },
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    calls = messages[1]["tool_calls"]
    assert [c["id"] for c in calls] == ["c1", "c2"] and messages[1]["content"] is None
    assert calls[0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert messages[3]["content"] == "cold"


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([], "input"),
        (7, "input"),
        (["text"], "input[0]"),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        ([{"role": "user", "content": [{"type": "input_image"}]}], "input[0].content[0].type"),
        ([{"role": "user", "content": 3}], "input[0].content"),
        ([{"role": "user", "content": "a"}, {"type": "web_search_call"}], "input[1].type"),
    ],
)
def test_bad_input_names_the_item(items: object, param: str) -> None:
    with pytest.raises(ControlError) as caught:
        input_messages(items)
    assert caught.value.param == param


def test_instructions_come_first_and_are_not_kept_in_the_history() -> None:
    previous = [{"role": "user", "content": "before"}, {"role": "assistant", "content": "ok"}]
    asked = parse_responses({"model": "m", "input": "now", "instructions": "be brief"}, previous)
    assert asked.chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert [m["content"] for m in asked.history] == ["before", "ok", "now"]
    assert refused(instructions=["x"]) == "instructions"


def test_parameters_become_the_chat_ones() -> None:
    asked = parse(
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        max_output_tokens=9,
        temperature=0.5,
        top_p=0.9,
        text={"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        stream=True,
    )
    chat = asked.chat
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False and chat["max_tokens"] == 9
    assert chat["temperature"] == 0.5 and chat["top_p"] == 0.9
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "s", "schema": {"type": "object"}},
    }
    assert chat["stream"] and chat["stream_options"] == {"include_usage": True}
    assert asked.echo["tool_choice"] == {"type": "function", "name": "get_weather"}


def test_text_format_text_and_no_tools_add_nothing() -> None:
    chat = parse(text={"format": {"type": "text"}}, tools=[]).chat
    assert "response_format" not in chat and "tools" not in chat
    assert refused(text={"format": "json"}) == "text.format"
    assert refused(tools=[{"type": "web_search"}]) == "tools[0].type"


def test_defaults_the_sdks_send_are_accepted_and_echoed() -> None:
    asked = parse(
        include=[],
        store=True,
        reasoning=None,
        truncation="disabled",
        metadata={"k": "v"},
        parallel_tool_calls=True,
        service_tier="auto",
    )
    assert asked.store and not asked.logprobs
    assert asked.echo["metadata"] == {"k": "v"} and asked.echo["truncation"] == "disabled"
    assert parse(reasoning={}).store and parse(reasoning={"effort": "none", "summary": None})
    assert parse(include=["reasoning.encrypted_content"]).logprobs is False


def test_store_false_is_honoured() -> None:
    assert parse(store=False).store is False


def test_logprobs_are_asked_through_include_or_top_logprobs() -> None:
    asked = parse(include=["message.output_text.logprobs"], top_logprobs=4)
    assert asked.logprobs and asked.chat["logprobs"] is True and asked.chat["top_logprobs"] == 4
    assert parse(top_logprobs=2).chat["logprobs"] is True
    assert "logprobs" not in parse(top_logprobs=0).chat


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "c"}, "conversation"),
        ({"prompt": {"id": "p"}}, "prompt"),
        ({"include": "message.output_text.logprobs"}, "include"),
        ({"include": ["message.output_text.logprobs", "bogus"]}, "include[1]"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"reasoning": "high"}, "reasoning"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    assert refused(**body) == param


def test_a_response_object_says_how_it_ended() -> None:
    usage = Usage(prompt_tokens=5, completion_tokens=3, cached_prompt_tokens=1)
    done = response_object("r1", "m", 1, {"store": True}, [], "stop", usage)
    assert done["id"] == "resp_r1" and done["status"] == "completed" and done["store"]
    assert done["usage"]["total_tokens"] == 8
    assert done["usage"]["input_tokens_details"] == {"cached_tokens": 1}
    cut = response_object("r1", "m", 1, {}, [], "length", usage)
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    going = response_object("r1", "m", 1, {}, [], None, None)
    assert going["status"] == "in_progress" and going["usage"] is None


def test_output_becomes_the_next_turns_history() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    output = [message_item("thinking"), call_item(call)]
    assert output[1]["call_id"] == "c1" and output[1]["type"] == "function_call"
    (turn,) = output_history(output)
    assert turn == {"role": "assistant", "content": "thinking", "tool_calls": [call]}
    assert output_history([]) == [{"role": "assistant", "content": None}]
    logprobs = [{"token": "a", "logprob": -1.0, "bytes": [97], "top_logprobs": []}]
    assert message_item("a", logprobs=logprobs)["content"][0]["logprobs"] == logprobs
    assert message_item("")["content"] == []


def _events(data: bytes) -> list[dict[str, Any]]:
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            kind, body = block.split("\n")
            event = msgspec.json.decode(body.removeprefix("data: "))
            assert kind == "event: " + event["type"]
            events.append(event)
    return events


def _builder(finish: str | None, usage: Usage | None, output: list[Any]) -> dict[str, Any]:
    return response_object("r", "m", 0, {}, output, finish, usage)


def test_streamed_text_is_the_typed_event_sequence() -> None:
    stream = ResponseEvents(_builder, logprobs=True)
    entry = TokenLogprob("Hi", -0.5, b"Hi", [TopLogprob("Hi", -0.5, b"Hi")])
    data = stream.start()
    data += stream.feed(AnswerChunk(text="Hi", logprobs=[entry]))
    data += stream.feed(AnswerChunk(text=" there"))
    data += stream.finish("stop", Usage(prompt_tokens=1, completion_tokens=2))
    events = _events(data)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[4]["logprobs"][0]["token"] == "Hi" and events[5]["logprobs"] == []
    assert events[6]["text"] == "Hi there" and len(events[6]["logprobs"]) == 1
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == 2
    assert final["output"][0]["content"][0]["text"] == "Hi there"


def test_a_streamed_call_is_added_its_arguments_streamed_and_done() -> None:
    stream = ResponseEvents(_builder)
    data = stream.start()
    data += stream.feed(AnswerChunk(tool_calls=[ToolCallDelta(index=0, id="c1", name="f")]))
    data += stream.feed(AnswerChunk(tool_calls=[ToolCallDelta(index=0, arguments='{"a":')]))
    data += stream.feed(AnswerChunk(tool_calls=[ToolCallDelta(index=0, arguments="1}")]))
    data += stream.feed(AnswerChunk(tool_calls=[ToolCallDelta(index=1, id="c2", name="g")]))
    data += stream.finish("tool_calls", Usage(prompt_tokens=1, completion_tokens=9))
    events = _events(data)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["item"]["call_id"] for e in added] == ["c1", "c2"]
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"a":', "1}"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [e["arguments"] for e in done] == ['{"a":1}', ""]
    final = events[-1]["response"]
    assert [item["status"] for item in final["output"]] == ["completed", "completed"]


def test_a_stream_cut_by_max_tokens_ends_incomplete() -> None:
    stream = ResponseEvents(_builder)
    stream.start()
    stream.feed(AnswerChunk(text="abc"))
    events = _events(stream.finish("length", Usage(prompt_tokens=1, completion_tokens=3)))
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    # The message cut short says so itself, as OpenAI's does.
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert done["item"]["status"] == "incomplete"
    assert last["response"]["output"][0]["status"] == "incomplete"


def test_a_whole_answers_items_say_how_it_ended() -> None:
    assert item_status("length") == "incomplete"
    assert [item_status(reason) for reason in ("stop", "tool_calls")] == ["completed"] * 2
