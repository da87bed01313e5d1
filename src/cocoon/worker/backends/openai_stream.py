"""What a model server's OpenAI answers say, read without I/O: streamed events and
whole answers, its errors.

msgspec decodes each event into small Structs that hold only the fields we
read (unknown fields are skipped): text, tool call pieces (`tool_calls`
deltas: id and name once, arguments in fragments), log probabilities, the
finish reason and usage. The worker relays tool calls and logprobs as they
come, so an app sees the upstream's own (vLLM's tool parser, say).
"""

from __future__ import annotations

import msgspec

from cocoon.inference import AnswerChunk, TokenLogprob, ToolCallDelta, Usage
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.http1 import Response
from cocoon.worker.backends.openai_logprobs import (
    ChatLogprobs,
    TextLogprobs,
    chat_logprobs,
    text_logprobs,
)

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


class _FunctionPiece(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallPiece(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _FunctionPiece | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCallPiece] | None = None


class _ChatChoice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class _TextChoice(msgspec.Struct):
    text: str | None = None
    finish_reason: str | None = None
    logprobs: TextLogprobs | None = None


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
    tool_calls: list[_ToolCallPiece] | None = None


class _ChatAnswerChoice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class _ChatAnswer(msgspec.Struct):
    """A non-streamed chat answer (only what we read)."""

    choices: list[_ChatAnswerChoice] = []
    usage: _Usage | None = None


class _TextAnswer(msgspec.Struct):
    """A non-streamed completion answer (only what we read)."""

    choices: list[_TextChoice] = []
    usage: _Usage | None = None


_chat_answer_decoder = msgspec.json.Decoder(_ChatAnswer)
_text_answer_decoder = msgspec.json.Decoder(_TextAnswer)
_chat_chunk_decoder = msgspec.json.Decoder(_ChatStreamChunk)
_text_chunk_decoder = msgspec.json.Decoder(_TextStreamChunk)
_chat_chunks_decoder = msgspec.json.Decoder(list[_ChatStreamChunk])
_text_chunks_decoder = msgspec.json.Decoder(list[_TextStreamChunk])
_error_decoder = msgspec.json.Decoder(_ErrorBody)

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
        # A whole (non-streamed) answer's tool calls and logprobs, for its final chunk.
        self.whole_calls: list[ToolCallDelta] = []
        self.whole_logprobs: list[TokenLogprob] = []

    def take(self, data: bytes) -> str:
        """Read one event's JSON; return its text delta ("" when it has none)."""
        chunk = self.take_chunk(data)
        return chunk.text if chunk is not None else ""

    def take_chunk(self, data: bytes) -> AnswerChunk | None:
        """Read one event's JSON; its text, tool call pieces and logprobs (None: nothing)."""
        try:
            decoded = (_chat_chunk_decoder if self._chat else _text_chunk_decoder).decode(data)
        except msgspec.DecodeError as exc:
            raise BackendError(
                "upstream_error", f"malformed event from the model server: {exc}"
            ) from exc
        read = self._read(decoded)
        return AnswerChunk(text=read) if isinstance(read, str) else read

    def take_chunks(self, events: list[bytes]) -> list[AnswerChunk]:
        """Read the events of one network read; their text runs joined, each piece with
        tool call pieces or logprobs as it came.

        The events are decoded as one JSON array: one call, not one per token. Where
        that fails, or gives another count, one is malformed, and each is read alone
        to say which."""
        decoded: list[_ChatStreamChunk] | list[_TextStreamChunk] | None = None
        if len(events) > 1:
            joined = b"[" + b",".join(events) + b"]"
            try:
                decoded = (_chat_chunks_decoder if self._chat else _text_chunks_decoder).decode(
                    joined
                )
            except msgspec.DecodeError:
                decoded = None
            if decoded is not None and len(decoded) != len(events):
                decoded = None
        if decoded is None:
            chunks = [self.take_chunk(event) for event in events]
            return [chunk for chunk in chunks if chunk is not None]
        batch: list[AnswerChunk] = []
        texts: list[str] = []
        for item in decoded:
            read = self._read(item)
            if isinstance(read, str):
                texts.append(read)
            elif read is not None:
                if texts:
                    batch.append(AnswerChunk(text="".join(texts)))
                    texts = []
                batch.append(read)
        if texts:
            batch.append(AnswerChunk(text="".join(texts)))
        return batch

    def _read(self, decoded: _ChatStreamChunk | _TextStreamChunk) -> str | AnswerChunk | None:
        """What one decoded event says: its text alone (nearly every event), a chunk
        with tool call pieces or logprobs, or None: nothing to hand on."""
        calls: list[ToolCallDelta] = []
        logprobs: list[TokenLogprob] = []
        text = None
        finish_reason = None
        if decoded.choices:
            if isinstance(decoded, _ChatStreamChunk):
                choice = decoded.choices[0]
                if choice.delta is not None:
                    text = choice.delta.content
                    if choice.delta.tool_calls:
                        calls = _calls(choice.delta.tool_calls)
                finish_reason = choice.finish_reason
                if choice.logprobs is not None:
                    logprobs = chat_logprobs(choice.logprobs)
            else:
                text_choice = decoded.choices[0]
                text = text_choice.text
                finish_reason = text_choice.finish_reason
                if text_choice.logprobs is not None:
                    logprobs = text_logprobs(text_choice.logprobs)
        if decoded.error is not None:
            raise BackendError("upstream_error", f"model server failed: {decoded.error.message}")
        if decoded.usage is not None:
            self.usage = decoded.usage
        if finish_reason is not None:
            self.finish_reason = finish_reason
        if not (text or calls or logprobs):
            return None
        self.deltas += 1
        if calls or logprobs:
            return AnswerChunk(text=text or "", tool_calls=calls, logprobs=logprobs)
        return text

    def take_whole(self, data: bytes) -> str:
        """Read a non-streamed answer's JSON; return its whole text."""
        try:
            if self._chat:
                chat = _chat_answer_decoder.decode(data)
                usage, text, finish_reason = chat.usage, None, None
                if chat.choices:
                    choice = chat.choices[0]
                    if choice.message:
                        text = choice.message.content
                        self.whole_calls = _calls(choice.message.tool_calls)
                    finish_reason = choice.finish_reason
                    self.whole_logprobs = chat_logprobs(choice.logprobs)
            else:
                completion = _text_answer_decoder.decode(data)
                usage, text, finish_reason = completion.usage, None, None
                if completion.choices:
                    text = completion.choices[0].text
                    finish_reason = completion.choices[0].finish_reason
                    self.whole_logprobs = text_logprobs(completion.choices[0].logprobs)
        except msgspec.DecodeError as exc:
            raise BackendError(
                "upstream_error", f"malformed answer from the model server: {exc}"
            ) from exc
        self.usage = usage
        self.finish_reason = finish_reason
        self.deltas = 1 if text or self.whole_calls else 0
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
        return AnswerChunk(
            text=text,
            finish_reason=self.finish_reason or "stop",
            usage=final_usage,
            tool_calls=self.whole_calls,
            logprobs=self.whole_logprobs,
        )


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


async def read_error_body(response: Response) -> bytes:
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


def read_events(events: list[bytes], state: StreamState) -> tuple[list[AnswerChunk], bool]:
    """The chunks of one read's events, and whether [DONE] came (what follows it is
    ignored)."""
    if _DONE in events:
        return state.take_chunks(events[: events.index(_DONE)]), True
    return state.take_chunks(events), False


def _calls(pieces: list[_ToolCallPiece] | None) -> list[ToolCallDelta]:
    calls = []
    for piece in pieces or []:
        function = piece.function or _FunctionPiece()
        calls.append(
            ToolCallDelta(
                index=piece.index,
                id=piece.id or "",
                name=function.name or "",
                arguments=function.arguments or "",
            )
        )
    return calls
