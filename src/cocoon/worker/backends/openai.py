"""The `openai` backend: any OpenAI-compatible model server, streamed over HTTP.

vLLM, SGLang, llama.cpp server and Ollama all serve `/v1/chat/completions` and
`/v1/completions` with server-sent events (DESIGN §8). We ask for
`stream_options.include_usage`, so the server's own token counts end the
stream; the worker signs its receipt from them.

The stream is decoded by hand (`SSEDecoder`, then msgspec into small Structs
that hold only the fields we read) rather than with the openai SDK: this is
the worker's hot path, and a stopped consumer must close the HTTP response at
once so the model server sees the disconnect and frees the GPU.

Embeddings requests pass through to the server's `/v1/embeddings` (vLLM,
llama.cpp server and Ollama serve it for embedding models) and come back as
one chunk of packed vectors, with the server's prompt token count.

Audits (kind "score") need a server that scores prompts, vLLM's
`prompt_logprobs`; whether it can is configured (`scoring`), since the API
does not say. The answer is sent as the start of the assistant's message
(`continue_final_message`) or after the prompt, for one token of generation,
and its scores are read from the prompt's (`prompt_logprobs`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import msgspec

from cocoon.agent_api.controls import FEATURES
from cocoon.inference import AnswerChunk, GenerationRequest, Usage, pack_vector
from cocoon.tee.model_id import model_name
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.http1 import HTTP1Client, Response, split_url
from cocoon.worker.backends.http1_connection import HTTPClientError
from cocoon.worker.backends.openai_stream import (
    StreamState,
    error_from_upstream,
    read_error_body,
    read_events,
)
from cocoon.worker.backends.prompt_logprobs import score_body, scored_chunk
from cocoon.worker.backends.sse import SSEDecoder

__all__ = ["OpenAIBackend", "OpenAIConfig", "StreamState", "error_from_upstream"]


class OpenAIConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the openai backend."""

    # Root of the server's OpenAI API, e.g. "http://127.0.0.1:8000/v1".
    base_url: str
    # Sent as a bearer token when set (vLLM's --api-key, for instance).
    api_key: str | None = None
    # Model names the worker announces; requests for others are refused.
    models: list[str] = []
    # The model name to send upstream when it differs from the announced one.
    upstream_model: str | None = None
    # Limit on one whole request, first byte to last token.
    timeout_s: float = 600.0
    # Limit on opening a connection to the server.
    connect_timeout_s: float = 10.0
    # Simultaneous connections to the server (one per streamed request).
    max_connections: int = 1024
    # The server scores prompts (vLLM's `prompt_logprobs`), so this worker can
    # audit its models' answers; off: audits are refused and none announced.
    scoring: bool = False
    # Most likely tokens asked per prompt position when scoring (vLLM allows up
    # to its --max-logprobs, 20 by default); more make `mass_above` closer.
    scoring_logprobs: int = 20
    # The API features the server honours (agent_api.controls.FEATURES), announced
    # for every model; tools etc. are passed through to it as the app sent them.
    features: list[str] = msgspec.field(default_factory=lambda: list(FEATURES))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {', '.join(FEATURES)}")


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0


class _EmbeddingAnswer(msgspec.Struct):
    """An embeddings answer (only what we read)."""

    data: list[_EmbeddingItem]
    usage: _EmbeddingUsage | None = None


_embedding_answer_decoder = msgspec.json.Decoder(_EmbeddingAnswer)
_body_encoder = msgspec.json.Encoder()


class OpenAIBackend:
    """A model server behind the OpenAI HTTP API, over one pool of keep-alive connections.

    Raises ValueError for a base URL that is not http:// or https://.
    """

    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        self._models = frozenset(config.models)
        origin, base_path = split_url(config.base_url)
        self._chat_path = f"{base_path}/chat/completions"
        self._completions_path = f"{base_path}/completions"
        self._embeddings_path = f"{base_path}/embeddings"
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = HTTP1Client(
            origin,
            headers=headers,
            max_connections=config.max_connections,
            connect_timeout_s=config.connect_timeout_s,
            timeout_s=config.timeout_s,
        )

    def models(self) -> list[str]:
        return list(self.config.models)

    def scoring_models(self) -> list[str]:
        return list(self.config.models) if self.config.scoring else []

    def features(self) -> dict[str, list[str]]:
        return {model: list(self.config.features) for model in self.config.models}

    def encode_body(self, request: GenerationRequest) -> bytes:
        """The JSON body sent upstream for a request."""
        # Pass-through parameters first, so they cannot switch streaming off.
        body: dict[str, object] = dict(request.extra)
        # A model served under its full id (name@sha256:<root>) is known
        # upstream by its name.
        body["model"] = self.config.upstream_model or model_name(request.model)
        if request.kind == "chat":
            body["messages"] = request.messages
        else:
            body["prompt"] = request.prompt
        body["stream"] = request.stream
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        return _body_encoder.encode(body)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        batches = self.generate_batches(request)
        try:
            async for batch in batches:
                for chunk in batch:
                    yield chunk
        finally:
            # At once, not when the garbage collector gets to it: closing
            # drops the HTTP response, which tells the server to stop.
            await batches.aclose()

    async def generate_batches(
        self, request: GenerationRequest
    ) -> AsyncGenerator[list[AnswerChunk], None]:
        """`generate`, a list per network read: every chunk that arrived together.

        The worker seals such a list as one chunk, so that a fast server's
        burst of tokens costs one frame, not one per token, while a token that
        arrives alone still leaves at once (nothing ever waits for company).
        """
        if request.model not in self._models:
            raise BackendError(
                "model_not_found", f"model {request.model!r} is not served here", 404
            )
        if request.kind == "embedding":
            yield [await self._embed(request)]
            return
        if request.kind == "score":
            yield [await self._score(request)]
            return
        path = self._chat_path if request.kind == "chat" else self._completions_path
        response = await self._post(path, self.encode_body(request))

        state = StreamState(request.kind)
        complete = False
        whole = ""
        last: list[AnswerChunk] = []
        try:
            if response.status != 200:
                raise error_from_upstream(response.status, await read_error_body(response))
            if request.stream:
                async for batch in self._read_stream(response, state):
                    if state.ended:
                        # The end came in the same read: this text leaves with
                        # the final chunk, below, as one sealed chunk.
                        last = batch
                    else:
                        yield batch
            else:
                # The app waits for the whole answer anyway: ask for it in one
                # piece, which spares the model server and us an event per token.
                whole = state.take_whole(await response.read())
            complete = True
        except (HTTPClientError, TimeoutError) as exc:
            # Before any text another worker can still answer; after, the
            # client has part of this answer and must not get a second one.
            started = state.deltas > 0
            raise BackendError(
                "upstream_error" if started else "upstream_unavailable",
                f"model server stream failed: {exc!r}",
                502,
                retryable=not started,
            ) from exc
        finally:
            if complete:
                response.release()
            else:
                # The consumer stopped, or the stream broke: drop the
                # connection so the server sees the disconnect and stops
                # generating, instead of returning it to the pool.
                response.close()
        yield [*last, state.final_chunk(whole)]

    async def _post(self, path: str, body: bytes) -> Response:
        try:
            return await self._client.post(path, body)
        except (HTTPClientError, TimeoutError) as exc:
            raise BackendError(
                "upstream_unavailable",
                f"cannot reach the model server at {self.config.base_url}: {exc!r}",
                502,
                retryable=True,
            ) from exc

    def encode_embedding_body(self, request: GenerationRequest) -> bytes:
        """The JSON body sent upstream for an embeddings request."""
        body: dict[str, object] = {
            "model": self.config.upstream_model or model_name(request.model),
            "input": request.input,
            # Every server speaks floats; base64 is an OpenAI nicety some lack.
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        return _body_encoder.encode(body)

    async def _post_whole(self, path: str, body: bytes) -> bytes:
        """POST a request whose answer comes whole (embeddings, scores); its body, or the
        upstream's error as a BackendError."""
        response = await self._post(path, body)
        try:
            if response.status != 200:
                raise error_from_upstream(response.status, await read_error_body(response))
            return await response.read()
        except (HTTPClientError, TimeoutError) as exc:
            raise BackendError(
                "upstream_unavailable", f"model server failed: {exc!r}", 502, retryable=True
            ) from exc
        finally:
            response.release()

    async def _embed(self, request: GenerationRequest) -> AnswerChunk:
        """One embeddings call upstream, as one final chunk of packed vectors."""
        body = await self._post_whole(self._embeddings_path, self.encode_embedding_body(request))
        try:
            answer = _embedding_answer_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise BackendError(
                "upstream_error", f"malformed embeddings from the model server: {exc}"
            ) from exc
        items = sorted(answer.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(request.input))):
            raise BackendError(
                "upstream_error",
                f"the model server sent {len(items)} embeddings for {len(request.input)} inputs",
            )
        return AnswerChunk(
            finish_reason="stop",
            usage=Usage(
                prompt_tokens=answer.usage.prompt_tokens if answer.usage else 0,
                completion_tokens=0,
            ),
            embeddings=[pack_vector(item.embedding) for item in items],
        )

    async def _score(self, request: GenerationRequest) -> AnswerChunk:
        """One scoring call upstream (an audit's prefill), as one final chunk of scores."""
        if not self.config.scoring:
            raise BackendError("unsupported", f"model {request.model!r} cannot be scored here", 400)
        path = self._chat_path if request.messages else self._completions_path
        model = self.config.upstream_model or model_name(request.model)
        body = score_body(request, model, self.config.scoring_logprobs)
        return scored_chunk(await self._post_whole(path, _body_encoder.encode(body)), request)

    async def _read_stream(
        self, response: Response, state: StreamState
    ) -> AsyncGenerator[list[AnswerChunk], None]:
        """The text of an SSE answer, a list per network read."""
        decoder = SSEDecoder()
        done = False
        async for data in response.iter_chunks():
            if state.deltas:
                # After the first text, let one loop turn pass and take what
                # arrived meanwhile: under load a burst of tokens then leaves
                # as one sealed chunk (one frame on each hop, one SSE write at
                # the client) instead of several, and a token alone still waits
                # no longer than that turn. 2 to 3 sealed chunks instead of 4
                # to 6 per zero-delay 64-token answer, and 5 to 12 % more streamed
                # tokens/s at c=64 (`cocoon bench`, runs alternated).
                await asyncio.sleep(0)
                data += response.read_nowait()
            batch, done = read_events(decoder.feed(data), state)
            state.ended = done
            if batch:
                yield batch
            if done:
                break
        else:
            batch, done = read_events(decoder.close(), state)
            # A body that ends without [DONE] but after the finish is whole too.
            state.ended = done or state.finish_reason is not None
            if batch:
                yield batch
        if not done and state.finish_reason is None:
            raise BackendError(
                "upstream_error", "model server ended the stream before the answer", 502
            )

    async def aclose(self) -> None:
        await self._client.aclose()
