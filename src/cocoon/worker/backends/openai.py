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
from collections.abc import AsyncGenerator, Iterable

import msgspec

from cocoon.inference import AnswerChunk, GenerationRequest, Usage, pack_vector
from cocoon.tee.model_id import model_name
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.http1 import HTTP1Client, HTTPClientError, Response, split_url
from cocoon.worker.backends.prompt_logprobs import score_body, scored_chunk
from cocoon.worker.backends.sse import SSEDecoder


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


# --- What we read of the server's answers (unknown fields are skipped). ---


class _ErrorDetail(msgspec.Struct):
    message: str = ""
    type: str | None = None
    # OpenAI sends a string code or null; vLLM sends the HTTP status as a number.
    code: str | int | None = None


class _ErrorBody(msgspec.Struct):
    # OpenAI's shape: {"error": {...}}. Some servers send {"error": "text"}, and
    # older vLLM puts message/type/code at the top level.
    error: _ErrorDetail | str | None = None
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _PromptTokensDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptTokensDetails | None = None
    completion_tokens_details: _CompletionTokensDetails | None = None


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChatChoice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _TextChoice(msgspec.Struct):
    text: str | None = None
    finish_reason: str | None = None


class _ChatStreamChunk(msgspec.Struct):
    choices: list[_ChatChoice] = []
    usage: _Usage | None = None
    # vLLM reports an error that happens mid-stream as one more event.
    error: _ErrorDetail | None = None


class _TextStreamChunk(msgspec.Struct):
    choices: list[_TextChoice] = []
    usage: _Usage | None = None
    error: _ErrorDetail | None = None


class _Message(msgspec.Struct):
    content: str | None = None


class _ChatAnswerChoice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None


class _ChatAnswer(msgspec.Struct):
    """A non-streamed chat answer (only what we read)."""

    choices: list[_ChatAnswerChoice] = []
    usage: _Usage | None = None


class _TextAnswer(msgspec.Struct):
    """A non-streamed completion answer (only what we read)."""

    choices: list[_TextChoice] = []
    usage: _Usage | None = None


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0


class _EmbeddingAnswer(msgspec.Struct):
    """An embeddings answer (only what we read)."""

    data: list[_EmbeddingItem]
    usage: _EmbeddingUsage | None = None


_chat_answer_decoder = msgspec.json.Decoder(_ChatAnswer)
_embedding_answer_decoder = msgspec.json.Decoder(_EmbeddingAnswer)
_text_answer_decoder = msgspec.json.Decoder(_TextAnswer)
_chat_chunk_decoder = msgspec.json.Decoder(_ChatStreamChunk)
_text_chunk_decoder = msgspec.json.Decoder(_TextStreamChunk)
_error_decoder = msgspec.json.Decoder(_ErrorBody)
_body_encoder = msgspec.json.Encoder()

_DONE = b"[DONE]"
# How much of an error response we read to find the server's message.
_MAX_ERROR_BODY = 64 * 1024


class StreamState:
    """What the stream has said so far; turns each event's data into new text."""

    def __init__(self, kind: str) -> None:
        self._chat = kind == "chat"
        self.finish_reason: str | None = None
        self.usage: _Usage | None = None
        self.deltas = 0
        # The text being handed on is the answer's last: the end came with it.
        self.ended = False

    def take(self, data: bytes) -> str:
        """Read one event's JSON; return its text delta ("" when it has none)."""
        try:
            if self._chat:
                chat = _chat_chunk_decoder.decode(data)
                error, usage = chat.error, chat.usage
                text = None
                if chat.choices:
                    choice = chat.choices[0]
                    if choice.delta is not None:
                        text = choice.delta.content
                    finish_reason = choice.finish_reason
                else:
                    finish_reason = None
            else:
                completion = _text_chunk_decoder.decode(data)
                error, usage = completion.error, completion.usage
                text, finish_reason = None, None
                if completion.choices:
                    text = completion.choices[0].text
                    finish_reason = completion.choices[0].finish_reason
        except msgspec.DecodeError as exc:
            raise BackendError(
                "upstream_error", f"malformed event from the model server: {exc}"
            ) from exc
        if error is not None:
            raise BackendError("upstream_error", f"model server failed: {error.message}")
        if usage is not None:
            self.usage = usage
        if finish_reason is not None:
            self.finish_reason = finish_reason
        if text:
            self.deltas += 1
            return text
        return ""

    def take_whole(self, data: bytes) -> str:
        """Read a non-streamed answer's JSON; return its whole text."""
        try:
            if self._chat:
                chat = _chat_answer_decoder.decode(data)
                usage, text, finish_reason = chat.usage, None, None
                if chat.choices:
                    choice = chat.choices[0]
                    text = choice.message.content if choice.message else None
                    finish_reason = choice.finish_reason
            else:
                completion = _text_answer_decoder.decode(data)
                usage, text, finish_reason = completion.usage, None, None
                if completion.choices:
                    text = completion.choices[0].text
                    finish_reason = completion.choices[0].finish_reason
        except msgspec.DecodeError as exc:
            raise BackendError(
                "upstream_error", f"malformed answer from the model server: {exc}"
            ) from exc
        self.usage = usage
        self.finish_reason = finish_reason
        self.deltas = 1 if text else 0
        return text or ""

    def final_chunk(self, text: str = "") -> AnswerChunk:
        """The chunk that ends the answer: why it ended and what it cost."""
        usage = self.usage
        if usage is None:
            # The server ignored stream_options.include_usage (older llama.cpp
            # and Ollama builds do). Without its tokenizer we cannot count the
            # prompt, so we bill it as 0 and count one completion token per
            # content delta, which is how these servers stream.
            final_usage = Usage(prompt_tokens=0, completion_tokens=self.deltas)
        else:
            prompt_details = usage.prompt_tokens_details
            completion_details = usage.completion_tokens_details
            final_usage = Usage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_prompt_tokens=(prompt_details and prompt_details.cached_tokens) or 0,
                reasoning_tokens=(completion_details and completion_details.reasoning_tokens) or 0,
            )
        return AnswerChunk(text=text, finish_reason=self.finish_reason or "stop", usage=final_usage)


def error_from_upstream(status: int, body: bytes) -> BackendError:
    """Map a model server's HTTP error answer to a `BackendError`.

    4xx: the request was at fault; the server's OpenAI error code and message
    pass through. 5xx, 408 and 429: the server could not answer now; another
    worker may. 401/403: the worker's own credentials are wrong, which is no
    fault of the caller.
    """
    message, code = _parse_error(body)
    if status >= 500 or status in (408, 429):
        return BackendError(
            "upstream_unavailable",
            f"model server answered HTTP {status}: {message}",
            502,
            retryable=True,
        )
    if status in (401, 403):
        return BackendError(
            "upstream_error", f"model server refused the worker's credentials: {message}", 502
        )
    if status < 400:
        return BackendError("upstream_error", f"model server answered HTTP {status}", 502)
    if code is None:
        lowered = message.lower()
        if "context length" in lowered or "context window" in lowered:
            code = "context_length_exceeded"
        elif status == 404:
            code = "model_not_found" if "model" in lowered else "not_found"
        else:
            code = "invalid_request"
    return BackendError(code, message, status)


async def _read_error_body(response: Response) -> bytes:
    body = b""
    while len(body) < _MAX_ERROR_BODY:
        part = await response.read_some()
        if not part:
            break
        body += part
    return body[:_MAX_ERROR_BODY]


def _parse_error(body: bytes) -> tuple[str, str | None]:
    """The message and string code of an error answer, if it is OpenAI error JSON."""
    try:
        parsed = _error_decoder.decode(body)
    except msgspec.DecodeError:
        return body[:500].decode("utf-8", "replace").strip() or "no details", None
    if isinstance(parsed.error, _ErrorDetail):
        message, code = parsed.error.message, parsed.error.code
    elif isinstance(parsed.error, str):
        message, code = parsed.error, None
    else:
        message, code = parsed.message or "", parsed.code
    return message or "no details", code if isinstance(code, str) and code else None


def _texts(events: Iterable[bytes], state: StreamState) -> tuple[list[AnswerChunk], bool]:
    """The text chunks of one read's events, and whether [DONE] came (what follows it is
    ignored)."""
    batch: list[AnswerChunk] = []
    for event in events:
        if event == _DONE:
            return batch, True
        text = state.take(event)
        if text:
            batch.append(AnswerChunk(text=text))
    return batch, False


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
                raise error_from_upstream(response.status, await _read_error_body(response))
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
                raise error_from_upstream(response.status, await _read_error_body(response))
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
            batch, done = _texts(decoder.feed(data), state)
            state.ended = done
            if batch:
                yield batch
            if done:
                break
        else:
            batch, done = _texts(decoder.close(), state)
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
