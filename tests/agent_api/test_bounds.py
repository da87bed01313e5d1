"""Bounds on what the newer surfaces keep or pass on: the response store's byte
budget, JSON schemas a worker would turn into a grammar, files `cocoon verify`
reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoon.agent_api.controls import ControlError, read_controls
from cocoon.agent_api.response_store import ResponseStore
from cocoon.agent_api.schema_limits import MAX_SCHEMA_NODES, MAX_SCHEMA_REPEAT
from cocoon.commands.bounded_read import read_bounded


def _put(store: ResponseStore, index: int, size: int) -> bool:
    response = {"id": f"resp_{index}", "instructions": "x" * size}
    return store.put(response, [{"role": "user", "content": "hi"}])


def test_the_store_keeps_within_its_byte_budget_and_forgets_the_oldest() -> None:
    store = ResponseStore(max_bytes=100_000, budget_bytes=250_000)
    for index in range(20):
        assert _put(store, index, 60_000)
        assert store.bytes <= 250_000
    assert len(store) == 4
    assert store.get("resp_0") is None and store.get("resp_19") is not None
    assert not _put(store, 99, 200_000)  # larger than one response may be
    assert store.get("resp_99") is None


def test_a_stored_response_reads_back_as_it_was_put() -> None:
    store = ResponseStore()
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
    store.put({"id": "resp_a", "output": [], "n": 1.5}, conversation)
    stored = store.get("resp_a")
    assert stored is not None
    assert stored.response == {"id": "resp_a", "output": [], "n": 1.5}
    assert stored.conversation == conversation


def _format(schema: object) -> dict[str, object]:
    return {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    }


def _string(**bounds: object) -> dict[str, object]:
    return {"type": "object", "properties": {"a": {"type": "string", **bounds}}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (_format(_string(maxLength=10**9)), "response_format.json_schema.schema"),
        (_format(_string(pattern="a{1000000}")), "response_format.json_schema.schema"),
        (_format(_string(pattern="a" * 1001)), "response_format.json_schema.schema"),
        (
            _format(
                {"type": "object", "properties": {str(i): {} for i in range(MAX_SCHEMA_NODES)}}
            ),
            "response_format.json_schema.schema",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": f"f{i}", "parameters": _string(maxLength=4000)},
                    }
                    for i in range(3)
                ]
            },
            "tools[2].function.parameters",
        ),
    ],
)
def test_schemas_a_grammar_would_blow_up_on_are_refused_by_name(
    extra: dict[str, object], param: str
) -> None:
    with pytest.raises(ControlError) as caught:
        read_controls(extra)
    assert caught.value.param == param


def test_schemas_within_the_bounds_pass() -> None:
    deep: dict[str, object] = {"type": "string"}
    for _ in range(10):  # OpenAI's 10 levels of objects
        deep = {"type": "object", "properties": {"a": deep}}
    read_controls(_format(deep))
    read_controls(_format(_string(maxLength=MAX_SCHEMA_REPEAT - 20, pattern="[a-z]{1,20}")))
    # A property named like a keyword is not a keyword.
    read_controls(_format({"type": "object", "properties": {"maxLength": {"type": "integer"}}}))


def test_a_file_to_verify_is_read_within_its_bound(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    assert read_bounded(small, limit=10) == b"x" * 10
    with pytest.raises(OSError, match="larger than 10 bytes"):
        read_bounded(Path("/dev/zero"), limit=10)
