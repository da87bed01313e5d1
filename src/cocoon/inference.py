"""What the client seals for a worker, and what the worker seals back.

These payloads travel only inside sealed envelopes (DESIGN §5): the proxy
never sees them. The client gateway builds a `GenerationRequest` from an
OpenAI request it has validated; the worker's backend turns it into a
stream of `AnswerChunk`s.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["chat", "completion"]


class ChatMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of a chat conversation, as the OpenAI API has it."""

    role: str
    content: str | list[dict[str, object]] | None = None
    name: str | None = None


class GenerationRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A validated OpenAI request: chat (`messages`) or completion (`prompt`)."""

    kind: Kind
    model: str
    messages: list[ChatMessage] = []
    prompt: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = []
    seed: int | None = None
    # Other sampling parameters (presence_penalty, logit_bias, ...), passed
    # through to backends that understand them.
    extra: dict[str, object] = {}
    # Whether the app reads the answer as a stream. A backend may produce a
    # non-streamed answer in one piece, which costs a model server less.
    stream: bool = True


class SealedPayload(msgspec.Struct, frozen=True, kw_only=True):
    """The plaintext inside a sealed request envelope."""

    request_id: str
    request: GenerationRequest
    # Fresh per request; the worker seals every answer chunk with it.
    response_key: bytes


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts by price class."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0


class AnswerChunk(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One sealed piece of an answer: new text, and on the last one why it ended."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


payload_encoder = msgspec.msgpack.Encoder()
payload_decoder = msgspec.msgpack.Decoder(SealedPayload)
chunk_decoder = msgspec.msgpack.Decoder(AnswerChunk)
