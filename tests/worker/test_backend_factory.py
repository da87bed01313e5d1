"""backend_from_config builds each kind from its settings and names what is wrong."""

from __future__ import annotations

import pytest

from cocoon.worker.backends import OpenAIBackend, SyntheticBackend, backend_from_config


def test_builds_synthetic() -> None:
    backend = backend_from_config("synthetic", models=["a", "b"], tokens_per_second=10)
    assert isinstance(backend, SyntheticBackend)
    assert backend.name == "synthetic"
    assert backend.models() == ["a", "b"]
    assert backend.config.tokens_per_second == 10


def test_builds_openai() -> None:
    backend = backend_from_config("openai", base_url="http://127.0.0.1:1/v1", models=["m"])
    assert isinstance(backend, OpenAIBackend)
    assert backend.models() == ["m"]


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown backend kind 'vllm'.*synthetic, openai"):
        backend_from_config("vllm")


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="'openai' backend"):
        backend_from_config("openai", models=["m"])  # no base_url
    with pytest.raises(ValueError, match=r"'synthetic' backend.*temperature"):
        backend_from_config("synthetic", temperature=1.0)
