"""Which inference engine `cocoon up` starts its workers on, and what it serves:
the built-in llama.cpp engine when installed, else the synthetic backend, and why."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

from .up_options import UpOptions


def engine_problem(options: UpOptions) -> str | None:
    """Why the llama engine cannot run here, or None if it can.

    Checked without importing the engine (the workers do that), so that `up`
    can say in one line why it falls back to the synthetic backend.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        # scripts/bootstrap leaves this marker in the venv when the install failed.
        if (Path(sys.prefix) / ".cocoon-engines-failed").exists():
            log = Path(sys.prefix) / "cocoon-engines-install.log"
            return f"its install failed (see {log}; COCOON_REQUIRE_ENGINES=1 ./scripts/up retries)"
        return "llama-cpp-python is not installed (the `llama` extra; ./scripts/up installs it)"
    if options.model_file is not None:
        return None if Path(options.model_file).is_file() else f"{options.model_file} not found"
    from .worker.backends.base import BackendUnavailable
    from .worker.backends.llama import bundled_model_file

    try:
        bundled_model_file()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def embeddings_problem() -> str | None:
    """Why the built-in embeddings model cannot run here, or None if it can."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return "sentence-transformers is not installed (the `embeddings` extra)"
    from .worker.backends.base import BackendUnavailable
    from .worker.backends.embeddings import bundled_model_dir

    try:
        bundled_model_dir()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def choose_engine(options: UpOptions) -> tuple[UpOptions, list[str]]:
    """The options to start with, and a line for each fallback taken on the way."""
    if options.upstream or options.engine != "llama":
        return options, []
    problem = engine_problem(options)
    if problem is not None:
        fallback = replace(options, engine="synthetic", embeddings=False)
        return fallback, [f"the llama engine is not available: {problem}; using synthetic"]
    if options.embeddings:
        problem = embeddings_problem()
        if problem is not None:
            return replace(options, embeddings=False), [f"no embeddings model: {problem}"]
    return options, []


def served_models(options: UpOptions, data_dir: Path) -> list[str]:
    """The model ids the workers will serve (hashed here, cached where worker1 looks)."""
    if options.upstream or options.engine != "llama":
        return [options.model or "synthetic-small"]
    from .tee.model_id import cached_model_id
    from .worker.backends.llama import bundled_model_file, default_model_name

    cache = data_dir / "worker1" / "model-ids.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    path = Path(options.model_file) if options.model_file else bundled_model_file()
    models = [cached_model_id(path, default_model_name(path), cache)]
    if options.embeddings:
        from .worker.backends.embeddings import DEFAULT_MODEL_NAME, bundled_model_dir

        models.append(cached_model_id(bundled_model_dir(), DEFAULT_MODEL_NAME, cache))
    return models
