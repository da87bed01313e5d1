"""What the client seals for a worker, and what the worker seals back.

These payloads travel only inside sealed envelopes (DESIGN §5): the proxy
never sees them. The client gateway builds a `GenerationRequest` from an
OpenAI request it has validated; the worker's backend turns it into a
stream of `AnswerChunk`s.

Embeddings ride the same path (kind "embedding"): the request carries the
input texts, and the answer is one chunk whose `embeddings` hold a vector per
input, so sealing, receipts and billing (prompt tokens) stay the same.

Audits ride it too (kind "score", DESIGN §11): the request carries the audited
request's prompt and sampling parameters and the `answer` it got; the auditor
runs one prefill pass and answers with one chunk whose `scores` hold each
answer token's rank and likelihood (`cocoon.audit.scores`). Billed as prompt
tokens, like a prefill.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from typing import Literal

import msgspec

Kind = Literal["chat", "completion", "embedding", "score", "verify"]


class ChatMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of a chat conversation, as the OpenAI API has it."""

    role: str
    content: str | list[dict[str, object]] | None = None
    name: str | None = None
    # An assistant turn's calls ({"id", "type": "function", "function": {"name",
    # "arguments"}}), and a tool turn's answer to one of them (its id).
    tool_calls: list[dict[str, object]] | None = None
    tool_call_id: str | None = None


class GenerationRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A validated OpenAI request: chat (`messages`), completion (`prompt`), embedding (`input`)."""

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
    # Embeddings: the texts to embed (one vector each), and the vector length
    # asked for (None: the model's own).
    input: list[str] = []
    dimensions: int | None = None
    # Audits (kind "score"): the answer to score after the prompt (`messages` or
    # `prompt`); the sampling fields above are the audited request's.
    answer: str = ""
    # Verdicts (kind "verify"): a packed `audit.evidence.VerifyRequest`.
    evidence: bytes = b""


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


class ToolCallDelta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A piece of the answer's `index`-th tool call: its id and name come once (on its
    first piece), its JSON arguments in fragments to be joined in order."""

    index: int = 0
    id: str = ""
    name: str = ""
    arguments: str = ""


class TopLogprob(msgspec.Struct, frozen=True, array_like=True):
    """One of the most likely tokens at a position: its text and log probability."""

    token: str
    logprob: float
    # The token's bytes: a token may be part of a UTF-8 character.
    raw: bytes


class TokenLogprob(msgspec.Struct, frozen=True, array_like=True):
    """A sampled token's log probability and, if asked, the most likely at its position."""

    token: str
    logprob: float
    raw: bytes
    top: list[TopLogprob] = []


class AnswerChunk(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One sealed piece of an answer: new text, and on the last one why it ended."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    # Embeddings only: one vector per input, in order, each packed as
    # little-endian float32 (what OpenAI's base64 encoding carries, and a
    # quarter of the size of msgpack floats).
    embeddings: list[bytes] = []
    # On the first chunk of a stream: the raw Ed25519 key of the worker that
    # answers. Sealed, so only a candidate can say it, and the answer's signed
    # receipts must come from that key; it spares the first chunk a signature.
    worker: bytes = b""
    # Audits only: the answer's per-token scores, packed by `cocoon.audit.scores`.
    scores: bytes = b""
    # Verdicts only: the verifier's signed verdict when it finds the answer false.
    verdict: bytes = b""
    # Tool calls, in pieces (a chat answer's `tool_calls`; finish_reason "tool_calls").
    tool_calls: list[ToolCallDelta] = []
    # The log probabilities of the tokens sampled since the last chunk, when asked.
    logprobs: list[TokenLogprob] = []


payload_encoder = msgspec.msgpack.Encoder()
payload_decoder = msgspec.msgpack.Decoder(SealedPayload)
chunk_decoder = msgspec.msgpack.Decoder(AnswerChunk)


def pack_vector(values: Sequence[float]) -> bytes:
    """A vector as little-endian float32, the form embeddings travel in."""
    return array.array("f", values).tobytes() if sys.byteorder == "little" else _swapped(values)


def unpack_vector(data: bytes) -> list[float]:
    """The floats of a packed vector; raises ValueError if it is not whole float32s."""
    if len(data) % 4:
        raise ValueError(f"a packed vector has a multiple of 4 bytes, not {len(data)}")
    values = array.array("f")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def _swapped(values: Sequence[float]) -> bytes:
    packed = array.array("f", values)
    packed.byteswap()
    return packed.tobytes()
