"""The built-in engine under constraints: forced tool calls, JSON schema answers, logprobs.

SmolLM2-135M calls no tool on its own; these prove the grammar makes a forced
call parse and validate, that a call's tokens are billed, and that logprobs
are the model's own (the greedy token is the most likely one).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator

import jsonschema
import pytest

from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from cocoon.worker.backends import BackendError
from cocoon.worker.backends.llama import LlamaBackend, LlamaConfig

pytestmark = pytest.mark.engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
ASK = [ChatMessage("user", "What is the weather in Paris?")]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaBackend]:
    cache = tmp_path_factory.mktemp("llama") / "model-ids.json"
    backend = LlamaBackend(LlamaConfig(max_queue=0, id_cache=str(cache), threads=1))
    yield backend
    asyncio.run(backend.aclose())


async def _run(llama: LlamaBackend, **fields: object) -> list[AnswerChunk]:
    fields.setdefault("messages", ASK)
    request = GenerationRequest(
        kind="chat",
        model=llama.model_id,
        temperature=0.0,
        **fields,  # type: ignore[arg-type]
    )
    return [chunk async for chunk in llama.generate(request)]


async def test_a_named_tool_call_is_forced_and_validates(llama: LlamaBackend) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    chunks = await _run(llama, max_tokens=60, extra={"tools": [WEATHER], "tool_choice": choice})
    calls = [call for chunk in chunks for call in chunk.tool_calls]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["function"]["parameters"])  # type: ignore[index]
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    # The call's tokens are completion tokens: the envelope alone is over 10.
    assert last.usage is not None and last.usage.completion_tokens > 10
    assert "".join(c.text for c in chunks) == ""


async def test_a_call_cut_by_max_tokens_is_text_with_finish_length(llama: LlamaBackend) -> None:
    chunks = await _run(llama, max_tokens=5, extra={"tools": [WEATHER], "tool_choice": "required"})
    assert not any(chunk.tool_calls for chunk in chunks)
    assert chunks[-1].finish_reason == "length"
    assert "".join(c.text for c in chunks).startswith("<tool_call>")


async def test_a_json_schema_answer_validates(llama: LlamaBackend) -> None:
    schema = {
        "type": "object",
        "properties": {
            "capital": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"},
        },
        "required": ["capital", "population"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}
    messages = [ChatMessage("user", "What is the capital of France? Answer in JSON.")]
    chunks = await _run(llama, messages=messages, max_tokens=60, extra={"response_format": fmt})
    assert chunks[-1].finish_reason == "stop"
    jsonschema.validate(json.loads("".join(c.text for c in chunks)), schema)


async def test_logprobs_are_the_models_own(llama: LlamaBackend) -> None:
    extra = {"logprobs": True, "top_logprobs": 3}
    chunks = await _run(llama, max_tokens=8, extra=extra)
    entries = [entry for chunk in chunks for entry in chunk.logprobs]
    assert chunks[-1].usage is not None
    assert len(entries) == chunks[-1].usage.completion_tokens == 8
    assert b"".join(e.raw for e in entries).decode() == "".join(c.text for c in chunks)
    for entry in entries:
        assert entry.logprob <= 0.0 and len(entry.top) == 3
        values = [top.logprob for top in entry.top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
        # Greedy: the sampled token is the most likely one.
        assert entry.top[0].raw == entry.raw and entry.top[0].logprob == entry.logprob


async def test_what_the_engine_cannot_do_is_refused_by_name(llama: LlamaBackend) -> None:
    with pytest.raises(BackendError, match="logit_bias") as caught:
        await _run(llama, max_tokens=2, extra={"logit_bias": {"1": 5}})
    assert caught.value.status == 400
    both = {"tools": [WEATHER], "response_format": {"type": "json_object"}}
    with pytest.raises(BackendError, match="response_format together with tools"):
        await _run(llama, max_tokens=2, extra=both)


def _calls(chunks: list[AnswerChunk]) -> list[tuple[int, str, dict[str, object]]]:
    return [
        (piece.index, piece.name, json.loads(piece.arguments))
        for chunk in chunks
        for piece in chunk.tool_calls
    ]


async def test_parallel_calls_are_whole_distinct_and_false_makes_exactly_one(
    llama: LlamaBackend,
) -> None:
    ask = [ChatMessage("user", "Weather in Paris and in London?")]
    for parallel in (True, False):
        chunks = await _run(
            llama,
            messages=ask,
            max_tokens=160,
            extra={"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": parallel},
        )
        calls = _calls(chunks)
        assert chunks[-1].finish_reason == "tool_calls"
        assert [index for index, _, _ in calls] == list(range(len(calls)))
        assert len(calls) == 1 if not parallel else 1 <= len(calls) <= 8
        arguments = [json.dumps(args, sort_keys=True) for _, _, args in calls]
        assert len(set(arguments)) == len(arguments)  # a repeated call ends the answer
        for _, name, args in calls:
            assert name == "get_weather"
            jsonschema.validate(args, WEATHER["function"]["parameters"])  # type: ignore[index]
        assert not "".join(chunk.text for chunk in chunks)


# The conversation after the model's own weather call and its result.
ANSWERED = [
    *ASK,
    ChatMessage(
        "assistant",
        None,
        tool_calls=[
            {
                "id": "c1",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city": "Paris", "unit": "celsius"}',
                },
            }
        ],
    ),
    ChatMessage("tool", "Sunny, 21 degrees.", tool_call_id="c1"),
]


async def test_after_its_result_a_repeated_call_becomes_an_answer(llama: LlamaBackend) -> None:
    chunks = await _run(llama, messages=ANSWERED, max_tokens=120, extra={"tools": [WEATHER]})
    text = "".join(chunk.text for chunk in chunks)
    # This model, shown its own call and the result, would call again (and an agent
    # would loop): the engine samples its answer instead, from the prompt without tools.
    assert not _calls(chunks) and text.strip() and not text.startswith("<")
    assert chunks[-1].finish_reason in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > len(text.split())


FINAL_ANSWER = {
    "type": "function",
    "function": {
        "name": "final_answer",
        "description": "Give the final answer to the user",
        "parameters": {
            "type": "object",
            "properties": {"answer": {"type": "string", "maxLength": 80}},
            "required": ["answer"],
        },
    },
}


async def test_a_required_call_never_repeats_an_answered_one(llama: LlamaBackend) -> None:
    # An agent that must call a tool each step (smolagents' ToolCallingAgent ends by
    # calling its own final_answer): this model, shown its call and the result,
    # asks for the same weather again under "required", whatever the step. The
    # engine samples that call again without get_weather, so the agent moves on.
    chunks = await _run(
        llama,
        messages=ANSWERED,
        max_tokens=160,
        extra={
            "tools": [WEATHER, FINAL_ANSWER],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
    )
    (call_made,) = _calls(chunks)
    _, name, args = call_made
    assert (name, args) != ("get_weather", {"city": "Paris", "unit": "celsius"})
    spec = WEATHER if name == "get_weather" else FINAL_ANSWER
    jsonschema.validate(args, spec["function"]["parameters"])  # type: ignore[index]
    assert chunks[-1].finish_reason == "tool_calls"
