"""A deterministic fake model: words from a fixed vocabulary at a configured rate.

Used by tests and benchmarks (DESIGN §8), so it must be exact and cheap:

- The same request (messages or prompt, seed, max_tokens) gives the same text,
  whatever the rate. One hash per request seeds a PRNG; tokens are then drawn
  from a precomputed vocabulary, with no per-token hashing.
- A token is a word. Prompt tokens are the whitespace-separated words of the
  prompt; for chat, those of every message plus a fixed per-message overhead,
  as real chat templates add role markers. Each yielded chunk is one
  completion token: one word, with a leading space except the first.
- The natural length of an answer lies in [default/2, default] tokens
  (default: `default_max_tokens`), chosen by the hash; `max_tokens` cuts it
  ("length"), a stop sequence ends it before the stop string ("stop").
- Tokens are paced against the event loop clock on a fixed schedule, so
  late wake-ups do not accumulate drift; at rate 0 they come as fast as the
  consumer takes them, with a yield to the loop every few tokens.
- Embeddings: a unit vector per input drawn from a PRNG seeded by the text
  (`dimensions` long, 16 by default), in one chunk; prompt tokens are words.
  Equal texts get equal vectors; there is no meaning in them.
- Audits (kind "score"): the model is deterministic, so scoring replays the
  audited request (same messages or prompt, seed, max_tokens, stop) and
  compares word by word: the word it would have said scores as a certain top
  token, any other as a far-down, unlikely one (`MATCH`, `MISS`). One plan and
  one pass over the answer's words: as cheap as answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections.abc import AsyncGenerator

import msgspec

from cocoon.audit.scores import AnswerScores, TokenScore, pack_scores
from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest, Usage, pack_vector
from cocoon.worker.backends.base import BackendError


class SyntheticConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the synthetic backend."""

    # Model names announced; any other model is refused with model_not_found.
    models: list[str] = msgspec.field(default_factory=lambda: ["synthetic-small"])
    # Completion tokens per second per request; 0 means as fast as possible.
    tokens_per_second: float = 0.0
    # Delay before the first token (time to first token), in milliseconds.
    first_token_delay_ms: float = 0.0
    # Upper bound of the natural answer length, and the length cap when the
    # request gives no max_tokens.
    default_max_tokens: int = 64


# Overhead of a chat template, in tokens: role markers around each message,
# and the primer that opens the assistant's reply (as OpenAI counts them).
CHAT_TOKENS_PER_MESSAGE = 3
CHAT_REPLY_PRIMER_TOKENS = 3

# Length of a synthetic embedding when the request asks for none.
EMBEDDING_DIMENSIONS = 16

# At rate 0, give the event loop a turn after this many tokens, so that one
# fast stream cannot starve the other connections of the process.
_YIELD_EVERY = 16

_WORDS = """lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor
    incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud
    exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure
    in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint
    occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est
    laborum curabitur pretium tincidunt lacus nulla gravida orci a odio nullam varius
    turpis et commodo pharetra est eros bibendum elit nec luctus magna felis sollicitudin
    mauris integer dignissim porta"""
_VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())
# Every word but the first of an answer comes with its leading space.
_SPACED_VOCABULARY: tuple[str, ...] = tuple(" " + word for word in _VOCABULARY)

# Audit scores of an answer word: the one the model says (it is certain of it),
# and any other (ranked in the middle of the vocabulary, with no probability).
MATCH = TokenScore(rank=0, logprob=math.log(0.99), top_logprob=math.log(0.99), mass_above=0.0)
MISS = TokenScore(
    rank=len(_VOCABULARY) // 2, logprob=-12.0, top_logprob=math.log(0.99), mass_above=0.99
)
# An answer's pieces as the generator emits them: a word and the space before it.
PIECE = re.compile(r"\s*\S+")


def synthetic_words(seed: int, count: int) -> list[str]:
    """`count` pieces of synthetic text drawn with `seed` (a word, then space-led words)."""
    pieces = random.Random(seed).choices(_SPACED_VOCABULARY, k=max(0, count))
    if pieces:
        pieces[0] = pieces[0][1:]
    return pieces


def count_prompt_tokens(request: GenerationRequest) -> int:
    """Prompt tokens of a request, by the synthetic backend's word rule."""
    if request.kind == "completion":
        return len(request.prompt.split())
    words = sum(len(_message_text(message).split()) for message in request.messages)
    return words + CHAT_TOKENS_PER_MESSAGE * len(request.messages) + CHAT_REPLY_PRIMER_TOKENS


def _message_text(message: ChatMessage) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # Multi-part content: only the text parts count (images are not words).
    texts = [part.get("text") for part in content if part.get("type") == "text"]
    return " ".join(text for text in texts if isinstance(text, str))


def _request_hash(request: GenerationRequest) -> int:
    material = msgspec.json.encode((request.kind, request.messages, request.prompt, request.seed))
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def _cut_at_stop(pieces: list[str], stops: list[str]) -> list[str] | None:
    """The pieces before the earliest stop string, or None when none occurs."""
    text = "".join(pieces)
    found = [position for stop in stops if stop and (position := text.find(stop)) >= 0]
    if not found:
        return None
    end = min(found)
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) >= end:
            if end > length:
                kept.append(piece[: end - length])
            break
        kept.append(piece)
        length += len(piece)
    return kept


class SyntheticBackend:
    """Deterministic text at a configured token rate, for tests and benchmarks."""

    name = "synthetic"

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config if config is not None else SyntheticConfig()
        self._models = frozenset(self.config.models)

    def models(self) -> list[str]:
        return list(self.config.models)

    def scoring_models(self) -> list[str]:
        return list(self.config.models)

    def features(self) -> dict[str, list[str]]:
        # Made-up text: it can follow no tool schema, JSON schema or logprobs.
        return {}

    def plan(self, request: GenerationRequest) -> tuple[list[str], str, Usage]:
        """The whole answer as text pieces (one per token), its finish reason and usage."""
        if request.model not in self._models:
            raise BackendError(
                "model_not_found", f"model {request.model!r} is not served here", 404
            )
        default = max(1, self.config.default_max_tokens)
        shortest = default // 2
        digest = _request_hash(request)
        natural = shortest + (digest >> 32) % (default - shortest + 1)
        limit = default if request.max_tokens is None else max(0, request.max_tokens)
        length = min(limit, natural)
        finish_reason = "length" if length < natural else "stop"

        pieces = synthetic_words(digest, length)
        if request.stop:
            before_stop = _cut_at_stop(pieces, request.stop)
            if before_stop is not None:
                pieces, finish_reason = before_stop, "stop"
        usage = Usage(prompt_tokens=count_prompt_tokens(request), completion_tokens=len(pieces))
        return pieces, finish_reason, usage

    def embed(self, request: GenerationRequest) -> AnswerChunk:
        """The whole answer to an embeddings request: one chunk with a vector per input."""
        if request.model not in self._models:
            raise BackendError(
                "model_not_found", f"model {request.model!r} is not served here", 404
            )
        size = request.dimensions or EMBEDDING_DIMENSIONS
        vectors = []
        for text in request.input:
            seed = hashlib.blake2b(text.encode(), digest_size=8).digest()
            draw = random.Random(seed)
            values = [draw.gauss(0.0, 1.0) for _ in range(size)]
            norm = math.sqrt(sum(v * v for v in values)) or 1.0
            vectors.append(pack_vector([v / norm for v in values]))
        tokens = sum(len(text.split()) for text in request.input)
        return AnswerChunk(
            finish_reason="stop",
            usage=Usage(prompt_tokens=tokens, completion_tokens=0),
            embeddings=vectors,
        )

    def score(self, request: GenerationRequest) -> AnswerChunk:
        """The whole answer to an audit: how each word of `request.answer` scores."""
        audited = msgspec.structs.replace(
            request, kind="chat" if request.messages else "completion", answer=""
        )
        expected = [piece.strip() for piece in self.plan(audited)[0]]
        words = [piece.strip() for piece in PIECE.findall(request.answer)]
        tokens = [
            MATCH if index < len(expected) and word == expected[index] else MISS
            for index, word in enumerate(words)
        ]
        return AnswerChunk(
            finish_reason="stop",
            usage=Usage(
                prompt_tokens=count_prompt_tokens(audited) + len(words), completion_tokens=0
            ),
            scores=pack_scores(AnswerScores(tokens=tokens, scorer="synthetic")),
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        if request.kind == "embedding":
            yield self.embed(request)
            return
        if request.kind == "score":
            yield self.score(request)
            return
        pieces, finish_reason, usage = self.plan(request)
        loop = asyncio.get_running_loop()
        rate = self.config.tokens_per_second
        start = loop.time() + self.config.first_token_delay_ms / 1000.0
        if self.config.first_token_delay_ms > 0:
            await asyncio.sleep(self.config.first_token_delay_ms / 1000.0)
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            if rate > 0:
                # Token i is due at start + i/rate: a fixed schedule, so a late
                # wake-up shortens the next wait instead of shifting every token.
                delay = start + index / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
            if index == last:
                yield AnswerChunk(text=piece, finish_reason=finish_reason, usage=usage)
            else:
                yield AnswerChunk(text=piece)
        if last < 0:
            yield AnswerChunk(finish_reason=finish_reason, usage=usage)

    async def aclose(self) -> None:
        return None
