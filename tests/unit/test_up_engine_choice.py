"""`cocoon up` picks the llama engine where it is installed, else synthetic, in one line."""

from __future__ import annotations

import importlib.util

import pytest

from cocoon import up_engines
from cocoon.up_engines import choose_engine
from cocoon.up_options import UpOptions


def test_a_missing_engine_falls_back_to_synthetic_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        up_engines.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a),
    )
    options, lines = choose_engine(UpOptions())
    assert (options.engine, options.embeddings) == ("synthetic", False)
    assert len(lines) == 1
    assert lines[0].startswith("the llama engine is not available: ")
    assert lines[0].endswith("; using synthetic")


def test_a_missing_model_file_falls_back_too() -> None:
    options, lines = choose_engine(UpOptions(model_file="/nonexistent/model.gguf"))
    assert options.engine == "synthetic"
    assert lines == [
        "the llama engine is not available: /nonexistent/model.gguf not found; using synthetic"
    ]


def test_synthetic_and_upstreams_are_taken_as_asked() -> None:
    assert choose_engine(UpOptions(engine="synthetic")) == (UpOptions(engine="synthetic"), [])
    with_upstream = UpOptions(upstream="http://127.0.0.1:1/v1", model="m")
    assert choose_engine(with_upstream) == (with_upstream, [])


def test_the_installed_engine_is_used() -> None:
    # scripts/test installs the engines: here they must be found.
    options, lines = choose_engine(UpOptions())
    assert (options.engine, options.embeddings, lines) == ("llama", True, [])
