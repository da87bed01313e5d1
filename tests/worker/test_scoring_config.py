"""A worker's TOML config turns on lying (tests only) and openai scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoon.config import ConfigError, WorkerConfig, load
from cocoon.roles import make_backend
from cocoon.worker.backends import OpenAIBackend, SyntheticBackend
from cocoon.worker.backends.lying import LyingBackend


async def test_a_lying_section_wraps_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\nmodels = ["m"]\n'
        '[lying]\nlie_rate = 0.3\nlie_mode = "padded"\nsalt = "x"\n'
    )
    backend = make_backend(load(WorkerConfig, path))
    assert isinstance(backend, LyingBackend) and isinstance(backend.inner, SyntheticBackend)
    assert backend.config.lie_rate == 0.3 and backend.config.lie_mode == "padded"
    assert backend.config.salt == "x"
    assert backend.scoring_models() == ["m"]
    honest = make_backend(WorkerConfig(data_dir=str(tmp_path)))
    assert isinstance(honest, SyntheticBackend)
    path.write_text("[lying]\nlie_rate = 2.0\n")
    with pytest.raises(ConfigError, match="lie_rate"):
        load(WorkerConfig, path)


async def test_openai_scoring_is_off_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(f'data_dir = "{tmp_path}"\nbackend = "openai"\nmodels = ["m"]\n')
    plain = make_backend(load(WorkerConfig, path))
    path.write_text(
        f'data_dir = "{tmp_path}"\nbackend = "openai"\nmodels = ["m"]\n'
        "[openai]\nscoring = true\nscoring_logprobs = 5\n"
    )
    scoring = make_backend(load(WorkerConfig, path))
    try:
        assert isinstance(scoring, OpenAIBackend) and scoring.config.scoring_logprobs == 5
        assert plain.scoring_models() == [] and scoring.scoring_models() == ["m"]
    finally:
        await plain.aclose()
        await scoring.aclose()
