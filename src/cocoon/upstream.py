"""A fast OpenAI-compatible HTTP server over the synthetic backend.

It stands in for vLLM and friends: tests point the worker's `openai` backend
at it, and `cocoon bench` uses it as the "direct" target that the full
client → proxy → worker path is compared against. So it must cost little per
token: request bodies are decoded with msgspec, and each streamed token is
written as one pre-built byte template around the JSON-encoded text.

Tools and structured output: a deterministic tool mode (`upstream_tools`).
Served: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`,
streamed (server-sent events ending with `data: [DONE]`, usage last when
`stream_options.include_usage` is set) or not, and `POST /v1/embeddings`
(the synthetic backend's meaningless vectors). Errors are OpenAI error JSON.
A chat request with vLLM's `prompt_logprobs` and `continue_final_message`
(what the openai backend sends to audit an answer) is answered as vLLM does
(`upstream_scoring`), so that workers on this server can audit.
`app[UPSTREAM_STATS]` counts requests, and the streams that clients dropped
mid-answer, so tests can prove that a stopped consumer cancels upstream work.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from cocoon.agent_api.answers import AgentEvents, complete_answer
from cocoon.inference import AnswerChunk, GenerationRequest, ToolCallDelta, Usage
from cocoon.openai_api import (
    OpenAIError,
    ParsedRequest,
    parse_chat,
    parse_completion,
    parse_embedding,
)
from cocoon.openai_output import (
    SSE_DONE,
    ChunkFormatter,
    embedding_response,
    full_response,
    models_list,
)
from cocoon.upstream_scoring import ScoringOptions, scored_answer, scoring_options
from cocoon.upstream_tools import (
    asked_logprobs,
    call_events,
    call_message,
    json_answer,
    planned_call,
    token_logprob,
)
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.synthetic import (
    SyntheticBackend,
    SyntheticConfig,
    count_prompt_tokens,
)


@dataclass
class UpstreamStats:
    """What the server has seen, for tests and benchmarks."""

    requests: int = 0
    in_flight: int = 0
    completed: int = 0
    # Requests whose client went away before the answer was complete.
    cancelled: int = 0
    # Replaced on every change, after waking whoever waited on the old one.
    _changed: asyncio.Event = field(
        default_factory=asyncio.Event, init=False, repr=False, compare=False
    )

    def started(self) -> None:
        """A request for a served model began."""
        self.requests += 1
        self.in_flight += 1
        self._notify()

    def ended(self, *, cancelled: bool) -> None:
        """A request ended: answered in full, or dropped by its client."""
        self.in_flight -= 1
        if cancelled:
            self.cancelled += 1
        else:
            self.completed += 1
        self._notify()

    async def wait_until(
        self, condition: Callable[[UpstreamStats], bool], timeout_s: float = 5.0
    ) -> None:
        """Return once `condition(self)` holds; raise TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


UPSTREAM_STATS = web.AppKey("stats", UpstreamStats)


_encode = msgspec.json.Encoder().encode


def _error_response(error: OpenAIError) -> web.Response:
    return web.Response(
        status=error.status, body=_encode(error.body()), content_type="application/json"
    )


class _SyntheticServer:
    """The route handlers: decode the body, run the backend, write the answer."""

    def __init__(self, backend: SyntheticBackend, stats: UpstreamStats) -> None:
        self.backend = backend
        self.stats = stats
        self._models = frozenset(backend.models())
        self._ids = itertools.count(1)

    async def models(self, request: web.Request) -> web.Response:
        body = _encode(models_list(self.backend.models()))
        return web.Response(body=body, content_type="application/json")

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, parse_chat)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, parse_completion)

    async def embeddings(self, request: web.Request) -> web.Response:
        try:
            parsed = parse_embedding(await request.read())
            answer = self.backend.embed(parsed.generation)
        except OpenAIError as exc:
            return _error_response(exc)
        except BackendError as exc:
            return _error_response(OpenAIError(exc.status, exc.message, code=exc.code))
        usage = answer.usage or Usage(prompt_tokens=0, completion_tokens=0)
        body = embedding_response(
            parsed.generation.model, answer.embeddings, parsed.encoding_format, usage
        )
        return web.Response(body=_encode(body), content_type="application/json")

    async def _answer(
        self, request: web.Request, parse: Callable[[bytes], ParsedRequest]
    ) -> web.StreamResponse:
        try:
            body = await request.read()
            parsed = parse(body)
            scoring = scoring_options.decode(body)
        except OpenAIError as exc:
            return _error_response(exc)
        except msgspec.DecodeError as exc:
            return _error_response(OpenAIError(400, f"invalid scoring options: {exc}"))
        generation = parsed.generation
        if scoring.prompt_logprobs is not None:
            return self._scored(generation, scoring)
        if generation.model not in self._models:
            return _error_response(
                OpenAIError(
                    404,
                    f"The model `{generation.model}` does not exist.",
                    code="model_not_found",
                )
            )
        answer_id = f"{next(self._ids):012x}"
        call = planned_call(generation)
        json_text = json_answer(generation) if call is None else None
        if call is not None or json_text is not None:
            self.stats.started()
            try:
                return await self._shaped(request, parsed, answer_id, call, json_text or "")
            finally:
                self.stats.ended(cancelled=False)
        self.stats.started()
        chunks = self.backend.generate(generation)
        cancelled = True
        try:
            if parsed.stream:
                response = await self._stream(
                    request, generation, answer_id, chunks, parsed.include_usage
                )
            else:
                response = await self._whole(generation, answer_id, chunks)
            cancelled = False
            return response
        finally:
            # An exception here means the client went away mid-answer: aiohttp
            # cancelled the handler, or a write found the connection reset.
            # Either way the backend generator is closed now, not left to GC.
            await chunks.aclose()
            self.stats.ended(cancelled=cancelled)

    async def _shaped(
        self,
        request: web.Request,
        parsed: ParsedRequest,
        answer_id: str,
        call: ToolCallDelta | None,
        text: str,
    ) -> web.StreamResponse:
        """A tool call or a JSON answer (upstream_tools), whole or streamed as OpenAI does."""
        generation = parsed.generation
        produced = call.arguments if call is not None else text
        usage = Usage(
            prompt_tokens=count_prompt_tokens(generation),
            completion_tokens=max(1, len(produced) // 4),
        )
        finish = "tool_calls" if call is not None else "stop"
        created = int(time.time())
        if not parsed.stream:
            body = full_response("chat", answer_id, generation.model, created, text, finish, usage)
            if call is not None:
                body["choices"][0]["message"].update(content=None, tool_calls=[call_message(call)])
            return web.Response(body=_encode(body), content_type="application/json")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = ChunkFormatter("chat", answer_id, generation.model, created)
        out = events.start()
        if call is not None:
            for delta in call_events(call):
                choice = {"index": 0, "delta": {"tool_calls": [delta]}, "finish_reason": None}
                out += events.head + b'"choices":[' + _encode(choice) + b"]}\n\n"
        else:
            half = len(text) // 2
            out += events.text(text[:half]) + events.text(text[half:])
        out += events.finish(finish)
        if parsed.include_usage:
            out += events.usage(usage)
        await response.write(out + SSE_DONE)
        await response.write_eof()
        return response

    def _scored(self, generation: GenerationRequest, scoring: ScoringOptions) -> web.Response:
        try:
            body = scored_answer(self.backend, generation, scoring, f"{next(self._ids):012x}")
        except OpenAIError as exc:
            return _error_response(exc)
        return web.Response(body=_encode(body), content_type="application/json")

    async def _stream(
        self,
        request: web.Request,
        generation: GenerationRequest,
        answer_id: str,
        chunks: AsyncGenerator[AnswerChunk, None],
        include_usage: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = ChunkFormatter(generation.kind, answer_id, generation.model, int(time.time()))
        pending = events.start()
        finish_reason, usage = "stop", None
        top = asked_logprobs(generation)
        shaped = AgentEvents(events.head, generation.kind == "chat") if top is not None else None
        async for chunk in chunks:
            if chunk.text and shaped is not None and top is not None:
                chunk = msgspec.structs.replace(chunk, logprobs=[token_logprob(chunk.text, top)])
                await response.write(pending + shaped.event(chunk))
                pending = b""
            elif chunk.text:
                await response.write(pending + events.text(chunk.text))
                pending = b""
            if chunk.finish_reason is not None:
                finish_reason, usage = chunk.finish_reason, chunk.usage
        tail = pending + events.finish(finish_reason)
        if include_usage and usage is not None:
            tail += events.usage(usage)
        await response.write(tail + SSE_DONE)
        await response.write_eof()
        return response

    async def _whole(
        self,
        generation: GenerationRequest,
        answer_id: str,
        chunks: AsyncGenerator[AnswerChunk, None],
    ) -> web.Response:
        texts: list[str] = []
        finish_reason, usage = "stop", Usage(prompt_tokens=0, completion_tokens=0)
        async for chunk in chunks:
            if chunk.text:
                texts.append(chunk.text)
            if chunk.finish_reason is not None:
                finish_reason = chunk.finish_reason
                usage = chunk.usage or usage
        body = full_response(
            generation.kind,
            answer_id,
            generation.model,
            int(time.time()),
            "".join(texts),
            finish_reason,
            usage,
        )
        top = asked_logprobs(generation)
        if top is not None:
            complete_answer(body, [], [token_logprob(text, top) for text in texts])
        return web.Response(body=_encode(body), content_type="application/json")


def make_app(backend: SyntheticBackend) -> web.Application:
    """The OpenAI-compatible application over `backend`; stats at `app[UPSTREAM_STATS]`.

    Run it with `handler_cancellation=True` (as `serve` does), so that a client
    that disconnects between two tokens is noticed at once, not at the next write.
    """
    app = web.Application()
    stats = UpstreamStats()
    app[UPSTREAM_STATS] = stats
    server = _SyntheticServer(backend, stats)
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_post("/v1/embeddings", server.embeddings)
    return app


async def serve(host: str, port: int, config: SyntheticConfig) -> tuple[web.AppRunner, int]:
    """Start the server on host:port (0: any free port); return its runner and bound port.

    Stop it with `await runner.cleanup()`.
    """
    app = make_app(SyntheticBackend(config))
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    address = runner.addresses[0]
    return runner, int(address[1])
