"""Several backends behind one worker, each answering for its own models.

A worker can serve a chat model and an embeddings model at once (the
built-in engine and sentence-transformers, say): the worker announces every
model, and each request goes to the backend that serves its model. One
worker, one HPKE key, one connection and one capacity for both keeps a small
deployment small; a big one can still run a worker per model.

An audit (kind "score") goes to a backend that can score its model, which
need not be the first one serving it; where none can, it is refused as
"unsupported" (400): the worker never announced that model as scorable.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

from cocoon.inference import AnswerChunk, GenerationRequest
from cocoon.worker.backends.base import Backend, BackendError


class RoutedBackend:
    """Backends chosen by the request's model."""

    def __init__(self, backends: list[Backend]) -> None:
        if not backends:
            raise ValueError("a routed backend needs at least one backend")
        self.backends = backends
        self.name = "+".join(backend.name for backend in backends)
        self._by_model: dict[str, Backend] = {}
        for backend in backends:
            for model in backend.models():
                self._by_model.setdefault(model, backend)

    def models(self) -> list[str]:
        return list(self._by_model)

    def features(self) -> dict[str, list[str]]:
        offered: dict[str, list[str]] = {}
        for backend in self.backends:
            for model, features in backend.features().items():
                if self._by_model.get(model) is backend:
                    offered[model] = features
        return offered

    def scoring_models(self) -> list[str]:
        scorable = {model for backend in self.backends for model in backend.scoring_models()}
        return [model for model in self._by_model if model in scorable]

    def _backend(self, request: GenerationRequest) -> Backend:
        if request.kind == "score":
            for candidate in self.backends:
                if request.model in candidate.scoring_models():
                    return candidate
            if request.model in self._by_model:
                raise BackendError(
                    "unsupported", f"model {request.model!r} cannot be scored here", 400
                )
        backend = self._by_model.get(request.model)
        if backend is None:
            raise BackendError(
                "model_not_found", f"model {request.model!r} is not served here", 404
            )
        return backend

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        chunks = self._backend(request).generate(request)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    async def generate_batches(
        self, request: GenerationRequest
    ) -> AsyncGenerator[list[AnswerChunk], None]:
        """The chosen backend's batches where it makes them, else a list per chunk."""
        backend = self._backend(request)
        batched: Callable[[GenerationRequest], AsyncIterator[list[AnswerChunk]]] | None = getattr(
            backend, "generate_batches", None
        )
        if batched is None:
            chunks = backend.generate(request)
            try:
                async for chunk in chunks:
                    yield [chunk]
            finally:
                await chunks.aclose()
            return
        batches = batched(request)
        try:
            async for batch in batches:
                yield batch
        finally:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()

    async def aclose(self) -> None:
        for backend in self.backends:
            await backend.aclose()
