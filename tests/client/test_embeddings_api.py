"""POST /v1/embeddings bodies: what is accepted, what is a 400, and the answer's shape."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from cocoon.inference import Usage, pack_vector, unpack_vector
from cocoon.openai_api import OpenAIError, parse_embedding
from cocoon.openai_output import embedding_response


def _body(**fields: object) -> bytes:
    return json.dumps({"model": "all-MiniLM-L6-v2", **fields}).encode()


def test_a_string_or_a_list_of_strings_becomes_an_embedding_request() -> None:
    one = parse_embedding(_body(input="hello"))
    assert one.generation.kind == "embedding"
    assert one.generation.input == ["hello"]
    assert one.generation.stream is False
    assert one.encoding_format == "float"
    many = parse_embedding(_body(input=["a", "b"], encoding_format="base64", dimensions=8))
    assert many.generation.input == ["a", "b"]
    assert many.generation.dimensions == 8
    assert many.encoding_format == "base64"


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"input": [1, 2, 3]}, "input", "token arrays are not supported"),
        ({"input": [[1, 2], [3]]}, "input", "token arrays are not supported"),
        ({"input": []}, "input", "must not be empty"),
        ({"input": ["fine", ""]}, "input", "empty strings"),
        ({"input": "x", "dimensions": 0}, "dimensions", "between 1 and 16384"),
        ({"input": "x", "dimensions": 16_385}, "dimensions", "between 1 and 16384"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "Invalid enum value"),
        ({}, "input", "missing required field"),
        ({"input": "x", "model": ""}, "model", "must not be empty"),
    ],
)
def test_bad_bodies_are_400_naming_the_param(
    fields: dict[str, object], param: str, says: str
) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_embedding(_body(**fields))
    assert info.value.status == 400
    assert info.value.param == param
    assert says in info.value.message


def test_too_many_inputs_are_refused() -> None:
    with pytest.raises(OpenAIError, match="at most 2048"):
        parse_embedding(_body(input=["x"] * 2049))


def test_vectors_travel_as_little_endian_float32() -> None:
    packed = pack_vector([1.0, -0.5, 0.25])
    assert packed == struct.pack("<3f", 1.0, -0.5, 0.25)
    assert unpack_vector(packed) == [1.0, -0.5, 0.25]
    with pytest.raises(ValueError, match="multiple of 4"):
        unpack_vector(b"\x00\x01\x02")


def test_the_answer_has_the_openai_shape_in_floats_and_base64() -> None:
    vectors = [pack_vector([0.5, 0.25]), pack_vector([1.0, 0.0])]
    usage = Usage(prompt_tokens=7, completion_tokens=0)
    floats = embedding_response("m", vectors, "float", usage)
    assert floats == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, 0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "model": "m",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    encoded = embedding_response("m", vectors, "base64", usage)["data"][1]["embedding"]
    # What the OpenAI SDK decodes: base64 of little-endian float32.
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, 0.0)
