"""Tools and structured output through the sealed path to an `openai` backend.

The worker's upstream is the in-project server in its deterministic tool mode
(`cocoon.upstream_tools`): what a tool-calling server (vLLM, SGLang) answers
must reach the app as the server sent it, whole or streamed, with tool calls
billed as completion tokens. A synthetic worker offers no feature: a request
that needs one is refused with a 400 naming it, never answered without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

import jsonschema
import openai
import pytest

from cocoon.config import OpenAIBackendConfig
from cocoon.upstream import serve
from cocoon.worker.backends.synthetic import SyntheticConfig

from .conftest import InProcessNetwork

MODEL = "synthetic-small"
PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["city", "unit", "days"],
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The forecast", "parameters": PARAMETERS},
}
ASK = [{"role": "user", "content": "Weather in Paris for 3 days?"}]


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    runner, port = await serve("127.0.0.1", 0, SyntheticConfig())
    yield port
    await runner.cleanup()


async def _network(inproc: InProcessNetwork, port: int, *features: str) -> openai.AsyncOpenAI:
    """A proxy (`inproc.proxy`), an openai worker on the upstream, and an SDK on the client."""
    await inproc.start_proxy()
    options = {"features": list(features)} if features else {}
    await inproc.start_worker(
        "w",
        backend="openai",
        openai=OpenAIBackendConfig(base_url=f"http://127.0.0.1:{port}/v1", **options),  # type: ignore[arg-type]
    )
    return openai.AsyncOpenAI(base_url=await inproc.start_client(), api_key="x", max_retries=0)


async def test_a_tool_call_comes_back_whole_billed_and_fed_back(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    client = await _network(inproc, upstream_port)
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required"
    )
    answer = raw.parse()
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    # The call's tokens are billed as completion tokens, on the worker's receipt.
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert raw.headers["x-cocoon-receipt"]
    charge = inproc.proxy.ledger.charge(raw.headers["x-request-id"])
    assert charge is not None
    assert charge["completion_tokens"] == answer.usage.completion_tokens

    # The tool's result goes back in the history; the server answers in text.
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'},
    ]
    final = await client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls
    await client.close()


async def test_a_streamed_tool_call_is_reassembled_by_the_sdk(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    client = await _network(inproc, upstream_port)
    async with client.chat.completions.stream(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream_options={"include_usage": True},
    ) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_completion()
    # The arguments came in fragments, and the SDK joined them.
    assert types.count("tool_calls.function.arguments.delta") >= 2
    (call,) = final.choices[0].message.tool_calls or []
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens > 0
    # It opened with no content, as OpenAI's do: "" would make an empty text part.
    assert final.choices[0].message.content is None
    await client.close()


async def test_a_json_schema_answer_passes_through(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    client = await _network(inproc, upstream_port)
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": PARAMETERS}}
    answer = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        response_format=fmt,  # type: ignore[arg-type]
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), PARAMETERS)
    await client.close()


async def test_langchain_binds_tools_through_the_sealed_path(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    from langchain_openai import ChatOpenAI

    client = await _network(inproc, upstream_port)
    chat = ChatOpenAI(base_url=str(client.base_url), api_key="x", model=MODEL, max_retries=0)  # type: ignore[arg-type]
    bound = chat.bind_tools([WEATHER], tool_choice="get_weather")
    message = await bound.ainvoke("Weather in Paris for 3 days?")
    (call,) = message.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], PARAMETERS)
    await client.close()


async def test_a_feature_no_worker_offers_is_a_400_naming_it(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    client = await _network(inproc, upstream_port, "response_format")
    models = await client.models.list()
    assert {m.id: m.model_extra["cocoon"]["features"] for m in models.data}[MODEL] == [  # type: ignore[index]
        "response_format"
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
    assert refused.value.code == "unsupported_feature"
    assert "supports tools" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=ASK, logprobs=True, top_logprobs=2
        )
    assert "supports logprobs" in refused.value.message
    # Malformed tools are the gateway's own 400, naming the parameter.
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert refused.value.param == "tool_choice"
    await client.close()


RESPONSES_TOOL = {"type": "function", "name": "get_weather", "parameters": PARAMETERS}


async def test_a_responses_round_trip_with_a_tool(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    client = await _network(inproc, upstream_port)
    raw = await client.responses.with_raw_response.create(
        model=MODEL,
        instructions="Use the tools.",
        input="Weather in Paris for 3 days?",
        tools=[RESPONSES_TOOL],  # type: ignore[list-item]
        tool_choice="required",
    )
    first = raw.parse()
    assert raw.headers["x-cocoon-receipt"] and raw.headers["x-cocoon-worker"]
    assert first.status == "completed" and first.usage is not None
    (call,) = [item for item in first.output if item.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), PARAMETERS)
    charge = inproc.proxy.ledger.charge(raw.headers["x-request-id"])
    assert charge is not None and charge["completion_tokens"] == first.usage.output_tokens

    # The tool's output continues the conversation the client node kept.
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[RESPONSES_TOOL],  # type: ignore[list-item]
    )
    assert second.output_text and second.previous_response_id == first.id
    assert (await client.responses.retrieve(second.id)).output_text == second.output_text

    # Streamed: the SDK reads the typed events into the same shape.
    async with client.responses.stream(
        model=MODEL,
        input="Weather?",
        tools=[RESPONSES_TOOL],
        tool_choice="required",  # type: ignore[list-item]
    ) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in types
    (streamed,) = [item for item in final.output if item.type == "function_call"]
    jsonschema.validate(json.loads(streamed.arguments), PARAMETERS)

    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="hi", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model=MODEL, input="hi", background=True)
    assert refused.value.param == "background"
    await client.close()


async def test_a_replicated_call_goes_to_workers_with_tools_and_keeps_its_call(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    await inproc.start_proxy()
    upstream = OpenAIBackendConfig(base_url=f"http://127.0.0.1:{upstream_port}/v1")
    for n in range(3):
        await inproc.start_worker(f"tools{n}", backend="openai", openai=upstream)
    # A synthetic worker of the same model, without tools: a replica sent to it
    # would answer in text, and no two replicas would agree on the call.
    plain = await inproc.start_worker("plain")
    client = openai.AsyncOpenAI(base_url=await inproc.start_client(), api_key="x", max_retries=0)
    replicated = {"x-cocoon-tier": "replicated"}
    for _ in range(3):
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice="required",
            extra_headers=replicated,
        )  # type: ignore[call-overload]
        choice = raw.parse().choices[0]
        assert raw.headers["x-cocoon-worker"] != plain.credentials.key_id
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
        extra_headers=replicated,
    )  # type: ignore[call-overload]
    pieces = [c.choices[0].delta.tool_calls async for c in stream if c.choices]
    calls = [piece for delta in pieces if delta for piece in delta]
    assert calls and calls[0].function and calls[0].function.name == "get_weather"
    assert inproc.gateway is not None
    await inproc.gateway.replicator.wait_idle()
    assert inproc.gateway.replicator.status()["agreed"] == 4
    await client.close()


async def test_the_upstream_logprobs_come_back_whole_and_streamed(
    inproc: InProcessNetwork, upstream_port: int
) -> None:
    client = await _network(inproc, upstream_port)
    whole = await client.chat.completions.create(
        model=MODEL, messages=ASK, logprobs=True, top_logprobs=3, max_tokens=8
    )
    content = whole.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert "".join(entry.token for entry in content) == whole.choices[0].message.content
    for entry in content:
        tops = [top.logprob for top in entry.top_logprobs]
        assert entry.top_logprobs[0].token == entry.token and tops == sorted(tops, reverse=True)
        assert sum(math.exp(t) for t in tops) < 1.0
    stream = await client.chat.completions.create(
        model=MODEL, messages=ASK, logprobs=True, top_logprobs=3, max_tokens=8, stream=True
    )
    streamed = [
        entry
        async for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    # The upstream is deterministic: the same tokens, the same numbers.
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    completion = await client.completions.create(
        model=MODEL, prompt="Say hi", logprobs=2, max_tokens=5
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.top_logprobs
    assert "".join(logprobs.tokens) == completion.choices[0].text
    assert all(len(top) == 2 for top in logprobs.top_logprobs)
    await client.close()
