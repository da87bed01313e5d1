"""A fast OpenAI-compatible HTTP server over the synthetic backend.

It stands in for vLLM and friends: tests point the worker's `openai` backend
at it, and `cocoon bench` uses it as the "direct" target that the full
client → proxy → worker path is compared against. So it must cost little per
token: request bodies are decoded with msgspec, and each streamed token is
written as one pre-built byte template around the JSON-encoded text.

Served: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`,
streamed (server-sent events ending with `data: [DONE]`, usage last when
`stream_options.include_usage` is set) or not. Errors are OpenAI error JSON.
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

from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest, Kind, Usage
from cocoon.worker.backends.synthetic import SyntheticBackend, SyntheticConfig


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


# --- Request bodies: only the fields this server reads; others are ignored. ---


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _ChatBody(msgspec.Struct, kw_only=True):
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None


class _CompletionBody(msgspec.Struct, kw_only=True):
    model: str
    prompt: str | list[str]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None


_chat_body_decoder = msgspec.json.Decoder(_ChatBody)
_completion_body_decoder = msgspec.json.Decoder(_CompletionBody)
_encode = msgspec.json.Encoder().encode


class _BadRequest(Exception):
    """A request this server refuses, with its HTTP status and OpenAI error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error_response(status: int, code: str, message: str) -> web.Response:
    error_type = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return web.Response(status=status, body=_encode(body), content_type="application/json")


def _usage_json(usage: Usage) -> dict[str, object]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else stop


def _check_max_tokens(max_tokens: int | None) -> None:
    if max_tokens is not None and max_tokens < 0:
        raise _BadRequest(400, "invalid_request", "max_tokens must not be negative")


class _Stream:
    """The byte templates of one streamed answer's server-sent events."""

    def __init__(self, kind: Kind, answer_id: str, model: str) -> None:
        self.kind = kind
        self.head = b'{"id":"%s","object":"%s","created":%d,"model":%s,' % (
            answer_id.encode(),
            b"chat.completion.chunk" if kind == "chat" else b"text_completion",
            int(time.time()),
            _encode(model),
        )
        if kind == "chat":
            self.text_prefix = b'data: %s"choices":[{"index":0,"delta":{"content":' % self.head
            self.text_suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self.text_prefix = b'data: %s"choices":[{"index":0,"text":' % self.head
            self.text_suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def role(self) -> bytes:
        """The opening chat event, which names the speaker (as OpenAI sends it)."""
        return (
            b'data: %s"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            b'"logprobs":null,"finish_reason":null}]}\n\n' % self.head
        )

    def text(self, text: str) -> bytes:
        return self.text_prefix + _encode(text) + self.text_suffix

    def finish(self, finish_reason: str) -> bytes:
        empty = b'"delta":{}' if self.kind == "chat" else b'"text":""'
        return b'data: %s"choices":[{"index":0,%s,"logprobs":null,"finish_reason":%s}]}\n\n' % (
            self.head,
            empty,
            _encode(finish_reason),
        )

    def usage(self, usage: Usage) -> bytes:
        return b'data: %s"choices":[],"usage":%s}\n\n' % (self.head, _encode(_usage_json(usage)))


_DONE_EVENT = b"data: [DONE]\n\n"


class _SyntheticServer:
    """The route handlers: decode the body, run the backend, write the answer."""

    def __init__(self, backend: SyntheticBackend, stats: UpstreamStats) -> None:
        self.backend = backend
        self.stats = stats
        self._models = frozenset(backend.models())
        self._ids = itertools.count(1)

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "cocoon"}
            for model in self.backend.models()
        ]
        return web.Response(
            body=_encode({"object": "list", "data": data}), content_type="application/json"
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = _chat_body_decoder.decode(await request.read())
            if not body.messages:
                raise _BadRequest(400, "invalid_request", "messages must not be empty")
            max_tokens = (
                body.max_completion_tokens
                if body.max_completion_tokens is not None
                else body.max_tokens
            )
            _check_max_tokens(max_tokens)
            generation = GenerationRequest(
                kind="chat",
                model=body.model,
                messages=body.messages,
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                stop=_stop_list(body.stop),
                seed=body.seed,
            )
        except msgspec.DecodeError as exc:
            return _error_response(400, "invalid_request", f"malformed request body: {exc}")
        except _BadRequest as exc:
            return _error_response(exc.status, exc.code, exc.message)
        return await self._answer(request, generation, body.stream, body.stream_options)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = _completion_body_decoder.decode(await request.read())
            if isinstance(body.prompt, list):
                if len(body.prompt) != 1:
                    raise _BadRequest(400, "invalid_request", "exactly one prompt is supported")
                prompt = body.prompt[0]
            else:
                prompt = body.prompt
            _check_max_tokens(body.max_tokens)
            generation = GenerationRequest(
                kind="completion",
                model=body.model,
                prompt=prompt,
                max_tokens=body.max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                stop=_stop_list(body.stop),
                seed=body.seed,
            )
        except msgspec.DecodeError as exc:
            return _error_response(400, "invalid_request", f"malformed request body: {exc}")
        except _BadRequest as exc:
            return _error_response(exc.status, exc.code, exc.message)
        return await self._answer(request, generation, body.stream, body.stream_options)

    async def _answer(
        self,
        request: web.Request,
        generation: GenerationRequest,
        stream: bool,
        stream_options: _StreamOptions | None,
    ) -> web.StreamResponse:
        if generation.model not in self._models:
            return _error_response(
                404, "model_not_found", f"The model `{generation.model}` does not exist."
            )
        self.stats.started()
        prefix = "chatcmpl-" if generation.kind == "chat" else "cmpl-"
        answer_id = f"{prefix}{next(self._ids):012x}"
        chunks = self.backend.generate(generation)
        cancelled = True
        try:
            if stream:
                include_usage = stream_options is not None and stream_options.include_usage
                response = await self._stream(request, generation, answer_id, chunks, include_usage)
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
        events = _Stream(generation.kind, answer_id, generation.model)
        if generation.kind == "chat":
            await response.write(events.role())
        finish_reason, usage = "stop", None
        async for chunk in chunks:
            if chunk.text:
                await response.write(events.text(chunk.text))
            if chunk.finish_reason is not None:
                finish_reason, usage = chunk.finish_reason, chunk.usage
        tail = events.finish(finish_reason)
        if include_usage and usage is not None:
            tail += events.usage(usage)
        await response.write(tail + _DONE_EVENT)
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
            texts.append(chunk.text)
            if chunk.finish_reason is not None:
                finish_reason = chunk.finish_reason
                usage = chunk.usage or usage
        text = "".join(texts)
        choice: dict[str, object] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if generation.kind == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        body = {
            "id": answer_id,
            "object": "chat.completion" if generation.kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": generation.model,
            "choices": [choice],
            "usage": _usage_json(usage),
        }
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
