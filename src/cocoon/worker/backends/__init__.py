"""Model backends of the worker (DESIGN §8), and the factory that builds one from settings."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from cocoon.worker.backends.base import Backend, BackendError, BackendUnavailable
from cocoon.worker.backends.openai import OpenAIBackend, OpenAIConfig
from cocoon.worker.backends.routed import RoutedBackend
from cocoon.worker.backends.synthetic import SyntheticBackend, SyntheticConfig

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "OpenAIBackend",
    "OpenAIConfig",
    "RoutedBackend",
    "SyntheticBackend",
    "SyntheticConfig",
    "backend_from_config",
]

BACKEND_KINDS = ("synthetic", "openai", "llama")
EMBEDDINGS_KINDS = ("sentence-transformers",)

_Config = TypeVar("_Config")


def backend_from_config(kind: str, **options: object) -> Backend:
    """Build the backend of `kind` from its settings (the fields of its config).

    Raises ValueError, naming the kind and the bad setting, for an unknown kind
    or settings its config does not accept; BackendUnavailable when a built-in
    engine (llama, sentence-transformers) or its model is not installed. The
    engines load their model here, which takes a moment.
    """
    if kind == "synthetic":
        return SyntheticBackend(_convert(kind, options, SyntheticConfig))
    if kind == "openai":
        return OpenAIBackend(_convert(kind, options, OpenAIConfig))
    # The engines import their (large, optional) libraries only when chosen.
    if kind == "llama":
        from cocoon.worker.backends.llama import LlamaBackend, LlamaConfig

        return LlamaBackend(_convert(kind, options, LlamaConfig))
    if kind == "sentence-transformers":
        from cocoon.worker.backends.embeddings import (
            SentenceTransformersBackend,
            SentenceTransformersConfig,
        )

        return SentenceTransformersBackend(_convert(kind, options, SentenceTransformersConfig))
    kinds = ", ".join((*BACKEND_KINDS, *EMBEDDINGS_KINDS))
    raise ValueError(f"unknown backend kind {kind!r}; expected one of: {kinds}")


def _convert(kind: str, options: dict[str, object], config_type: type[_Config]) -> _Config:
    try:
        return msgspec.convert(options, config_type)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid settings for the {kind!r} backend: {exc}") from exc
