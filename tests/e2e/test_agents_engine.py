"""What agents use, against `cocoon up` on the built-in engine (SmolLM2-135M, llama.cpp).

The model is too small to call tools on its own; a required or named call is
forced by grammar, so its arguments always parse and validate. One network
serves the module; answers are kept short (the engine shares 2 cores).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from .conftest import UpProcess, start_up, stop_up

pytestmark = [pytest.mark.slow, pytest.mark.engine]

MODEL = "SmolLM2-135M-Instruct"
PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": PARAMETERS,
    },
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def engine_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    up = start_up(
        tmp_path_factory.mktemp("agents"),
        *("--engine", "llama", "--no-embeddings", "--workers", "1"),
        ready_s=180,
    )
    try:
        yield up
    finally:
        stop_up(up)


@pytest.fixture
def client(engine_up: UpProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=engine_up.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


def test_a_forced_call_validates_and_its_result_is_answered(client: openai.OpenAI) -> None:
    models = {m.id: m.model_extra["cocoon"]["features"] for m in client.models.list().data}  # type: ignore[index]
    assert models[MODEL] == ["logprobs", "response_format", "tools"]
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=FORCED, temperature=0, max_tokens=64
    )
    answer = raw.parse()
    assert raw.headers["x-cocoon-receipt"]
    assert answer.choices[0].finish_reason == "tool_calls", answer.choices[0].message.content
    (call,) = answer.choices[0].message.tool_calls or []
    assert answer.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    assert answer.usage is not None and answer.usage.completion_tokens > 10

    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees."},
    ]
    final = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], temperature=0, max_tokens=12
    )
    assert final.choices[0].message.content


def test_a_streamed_call_is_reassembled_by_the_sdk(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_tokens=64,
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)


def test_a_json_schema_answer_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 20}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "The capital of France, as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": schema, "strict": True},
        },
        temperature=0,
        max_tokens=30,
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), schema)


def test_logprobs_sum_sensibly(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL, messages=ASK, logprobs=True, top_logprobs=3, temperature=0, max_tokens=6
    )
    content = answer.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert len(content) == 6
    assert "".join(entry.token for entry in content) == answer.choices[0].message.content
    for entry in content:
        tops = [top.logprob for top in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True) and sum(math.exp(t) for t in tops) <= 1.0 + 1e-6
        assert entry.token in [top.token for top in entry.top_logprobs]


def test_a_responses_round_trip_with_a_tool_and_langchain(
    engine_up: UpProcess, client: openai.OpenAI
) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": PARAMETERS}
    first = client.responses.create(
        model=MODEL,
        input="Weather in Paris?",
        tools=[tool],
        tool_choice="required",
        max_output_tokens=64,  # type: ignore[list-item]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), PARAMETERS)
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}],
        max_output_tokens=12,
    )
    assert second.output_text and second.usage is not None

    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=engine_up.base_url,
        api_key="x",
        model=MODEL,
        max_retries=0,
        temperature=0,
        max_tokens=64,
    )  # type: ignore[arg-type]
    message = chat.bind_tools([WEATHER], tool_choice="get_weather").invoke("Weather in Paris?")
    (lc_call,) = message.tool_calls  # type: ignore[attr-defined]
    jsonschema.validate(lc_call["args"], PARAMETERS)


def _agent_run(base_url: str, api: str, streamed: bool) -> tuple[Any, list[str]]:
    """One OpenAI Agents SDK run of a weather agent (the Responses API or chat
    completions model): the tool's calls, and the run's result."""
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        cities.append(city)
        return f"Sunny in {city}, 21 degrees."

    async def run() -> Any:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as sdk:
            model: Any = (
                OpenAIResponsesModel(model=MODEL, openai_client=sdk)
                if api == "responses"
                else OpenAIChatCompletionsModel(model=MODEL, openai_client=sdk)
            )
            # The first turn must call (the model is too small to choose to); the
            # SDK then resets tool_choice, and the answer after the result is the
            # model's own choice under `auto`.
            agent = Agent(
                name="weather",
                instructions="Answer briefly.",
                model=model,
                tools=[get_weather],
                model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=120),
            )
            if not streamed:
                return await Runner.run(agent, "Weather in Paris?", max_turns=3)
            result = Runner.run_streamed(agent, "Weather in Paris?", max_turns=3)
            kinds = {event.type async for event in result.stream_events()}
            assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
            return result

    return asyncio.run(run()), cities


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_an_agents_sdk_agent_calls_its_tool_and_answers(engine_up: UpProcess, api: str) -> None:
    for streamed in (False, True):
        result, cities = _agent_run(engine_up.base_url, api, streamed)
        kinds = [type(item).__name__ for item in result.new_items]
        # Called once, its result fed back, then a text answer (not the call again).
        assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"], kinds
        assert len(cities) == 1 and cities[0]
        assert isinstance(result.final_output, str) and result.final_output.strip()


def test_responses_logprobs_whole_and_streamed(client: openai.OpenAI) -> None:
    asked: dict[str, Any] = {
        "model": MODEL,
        "input": "Say hi.",
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
        "temperature": 0,
        "max_output_tokens": 6,
    }
    whole = client.responses.create(**asked)
    (part,) = whole.output[0].content  # type: ignore[union-attr]
    assert part.type == "output_text" and part.logprobs is not None and len(part.logprobs) == 6
    assert "".join(entry.token for entry in part.logprobs) == part.text
    for entry in part.logprobs:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
    deltas = []
    for event in client.responses.create(**asked, stream=True):
        if event.type == "response.output_text.delta":
            deltas.extend(event.logprobs)
    assert [d.token for d in deltas] == [entry.token for entry in part.logprobs]
