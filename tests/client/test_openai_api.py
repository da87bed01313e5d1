from __future__ import annotations

import json

import msgspec
import pytest

from cocoon.inference import Usage
from cocoon.openai_api import OpenAIError, parse_chat, parse_completion
from cocoon.openai_output import ChunkFormatter, full_response


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_chat_is_validated_into_a_generation_request() -> None:
    parsed = parse_chat(
        body(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=7,
            max_tokens=99,
            stop="END",
            temperature=0.5,
            presence_penalty=0.1,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    g = parsed.generation
    assert (g.kind, g.model, g.max_tokens, g.stop, g.temperature) == ("chat", "m", 7, ["END"], 0.5)
    assert g.extra == {"presence_penalty": 0.1}
    assert parsed.stream and parsed.include_usage


def test_completion_defaults_to_sixteen_tokens() -> None:
    parsed = parse_completion(body(model="m", prompt=["once"]))
    assert parsed.generation.prompt == "once"
    assert parsed.generation.max_tokens == 16


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"[1,2]", None),
        (body(model="m"), None),  # messages missing
        (body(model="m", messages="hi"), "messages"),
        (body(model="m", messages=[]), "messages"),
        (body(model="m", messages=[{"role": "user", "content": "x"}], n=2), "n"),
        (body(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=0), "max_tokens"),
        (
            body(model="m", messages=[{"role": "user", "content": "x"}], temperature=3),
            "temperature",
        ),
        (body(model="m", messages=[{"role": "user", "content": "x"}], stop=["a"] * 5), "stop"),
    ],
)
def test_malformed_chat_bodies_are_400_with_the_param(raw: bytes, param: str | None) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_chat(raw)
    assert info.value.status == 400
    error = info.value.body()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_streamed_chunks_have_the_openai_shape() -> None:
    formatter = ChunkFormatter("chat", "r1", "m", 123)
    first = msgspec.json.decode(formatter.start()[6:])
    text = msgspec.json.decode(formatter.text('He said "hi"\n')[6:])
    finish = msgspec.json.decode(formatter.finish("stop")[6:])
    usage = msgspec.json.decode(formatter.usage(Usage(prompt_tokens=2, completion_tokens=2))[6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["choices"][0] == {
        "index": 0,
        "delta": {"content": 'He said "hi"\n'},
        "logprobs": None,
        "finish_reason": None,
    }
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 4
    assert first["id"] == "chatcmpl-r1" and first["object"] == "chat.completion.chunk"
    assert all(e.endswith(b"\n\n") for e in (formatter.start(), formatter.text("x")))


def test_completion_chunks_carry_text() -> None:
    formatter = ChunkFormatter("completion", "r2", "m", 1)
    assert formatter.start() == b""
    event = msgspec.json.decode(formatter.text("abc")[6:])
    assert event["object"] == "text_completion" and event["choices"][0]["text"] == "abc"
    assert event["id"] == "cmpl-r2"


def test_full_response_counts_cached_and_reasoning_tokens() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=4, cached_prompt_tokens=3, reasoning_tokens=1)
    response = full_response("completion", "r", "m", 1, "text", "length", usage)
    assert response["object"] == "text_completion"
    assert response["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    assert response["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}
