"""Hypothesis over POST /v1/responses bodies as the gateway reads them: near-valid
bodies with any field any JSON, input items of every type with junk fields,
schemas of any shape. Only a 4xx OpenAIError; what is accepted encodes for the
worker, and the store it lands in stays within its budget."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cocoon.agent_api.response_store import ResponseStore
from cocoon.agent_api.responses import output_history, response_object
from cocoon.client.responses_route import chat_request, read_request
from cocoon.inference import SealedPayload, payload_encoder
from cocoon.openai_api import OpenAIError

from .test_decoders import FUZZ, JSON

ITEM_TYPES = ["message", "function_call", "function_call_output", "reasoning", "web_search_call"]
TEXT_PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image"]), "text": JSON}
)
ITEM = st.fixed_dictionaries(
    {"type": st.sampled_from(ITEM_TYPES) | JSON},
    optional={
        "role": st.sampled_from(["user", "assistant", "developer", "tool"]) | JSON,
        "content": st.text(max_size=8) | st.lists(TEXT_PART, max_size=3) | JSON,
        "name": st.sampled_from(["get", "a b", "x" * 65]) | JSON,
        "arguments": st.just("{}") | JSON,
        "call_id": st.sampled_from(["c1", "", "c" * 300]) | JSON,
        "output": st.text(max_size=8) | JSON,
    },
)
SCHEMA = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "object", "array"])},
        optional={
            "maxLength": st.integers(-5, 10**9),
            "minItems": st.integers(-5, 10**7),
            "pattern": st.sampled_from(["a{3}", "a{99999}", "[a-z]+", "("]),
        },
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.just("object"), "properties": st.dictionaries(st.text(max_size=4), inner)}
    ),
    max_leaves=8,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.just("m") | JSON,
    "input": st.text(max_size=8) | st.lists(ITEM, max_size=4) | JSON,
    "instructions": st.text(max_size=8) | JSON,
    "previous_response_id": st.sampled_from(["resp_stored", "resp_gone", "r" * 300]) | JSON,
    "tools": st.lists(
        st.fixed_dictionaries(
            {"type": st.just("function") | JSON, "name": st.sampled_from(["get", "f-1"]) | JSON},
            optional={"parameters": SCHEMA | JSON},
        ),
        max_size=3,
    )
    | JSON,
    "tool_choice": st.sampled_from(["auto", "none", "required"])
    | st.fixed_dictionaries({"type": st.just("function"), "name": JSON})
    | JSON,
    "text": st.fixed_dictionaries(
        {
            "format": st.fixed_dictionaries(
                {"type": st.just("json_schema"), "name": st.just("x"), "schema": SCHEMA | JSON}
            )
            | JSON
        }
    )
    | JSON,
    "metadata": st.dictionaries(st.text(max_size=70), JSON, max_size=20) | JSON,
    "include": st.lists(st.just("message.output_text.logprobs") | JSON, max_size=2) | JSON,
    "top_logprobs": JSON,
    "max_output_tokens": JSON,
    "temperature": JSON,
    "stream": JSON,
    "store": JSON,
    "reasoning": JSON,
}


def _store() -> ResponseStore:
    store = ResponseStore(budget_bytes=64 << 10)
    store.put(
        response_object("stored", "m", 0, {}, [], "stop", None),
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    )
    return store


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=256))
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=len(FIELDS)))
    body = {"model": "m", "input": "hi", **{key: draw(FIELDS[key]) for key in keys}}
    text = json.dumps(body)
    if draw(st.integers(0, 9)) == 0:
        depth = draw(st.integers(1, 3000))
        text = text[:-1] + ', "input": ' + "[" * depth + "]" * depth + "}"
    return text.encode()


@FUZZ
@given(bodies())
def test_responses_bodies_get_only_4xx_and_what_is_accepted_encodes_and_is_stored(
    body: bytes,
) -> None:
    store = _store()
    try:
        asked = read_request(body, store)
        parsed = chat_request(asked)
    except OpenAIError as exc:
        assert 400 <= exc.status < 500, exc.message
        assert len(exc.message) <= 300, exc.message
        return
    payload_encoder.encode(
        SealedPayload(request_id="r", request=parsed.generation, response_key=b"k" * 32)
    )
    response = response_object("r", "m", 0, asked.echo, [], "stop", None)
    store.put(response, asked.history + output_history([]))
    assert store.bytes <= store.budget_bytes
    stored = store.get("resp_r")
    if stored is not None:
        assert stored.response == json.loads(json.dumps(response))
