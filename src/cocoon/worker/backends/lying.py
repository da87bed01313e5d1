"""A dishonest backend, for tests and the audit check: it lies for a share of requests.

An open network pays strangers (DESIGN §11), so audits must catch a worker
that returns cheaper text than the model's. This wrapper makes such a worker
out of an honest backend (synthetic or llama): for a fraction `lie_rate` of
chat and completion requests it replaces the answer, and bills it as if it
were honest (the inner backend's usage). Which requests is decided by a hash
of the request, so the same request is always answered the same way, and the
rate over many distinct requests is the configured one.

Lies (`lie_mode`):

- "other_model": the text of another generator, words of the synthetic
  vocabulary drawn with another seed, as many as the honest answer had tokens.
- "padded": the honest answer cut at half its length (at a word boundary),
  then filler words up to the honest length, as a worker that stops early to
  save compute and pads would.

Embeddings and audits (kind "score") pass through honestly: this worker lies
as a generator, not as an auditor.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from typing import Literal

import msgspec

from cocoon.inference import AnswerChunk, GenerationRequest, Usage
from cocoon.worker.backends.base import Backend
from cocoon.worker.backends.synthetic import synthetic_words

LieMode = Literal["other_model", "padded"]


class LyingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of a dishonest worker (tests and the held-out audit check only)."""

    # Share of chat and completion requests answered with a lie, 0 to 1.
    lie_rate: float = msgspec.field(default=0.0)
    # "other_model" (another generator's words) or "padded" (half, then filler).
    lie_mode: LieMode = "other_model"
    # Another salt picks other requests at the same rate.
    salt: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.lie_rate <= 1.0:
            raise ValueError(f"lie_rate is a share between 0 and 1, not {self.lie_rate}")


def lies_to(request: GenerationRequest, rate: float, salt: str = "") -> bool:
    """Whether a worker lying at `rate` lies to `request` (a hash of it, so always the same)."""
    if rate <= 0.0 or request.kind not in ("chat", "completion"):
        return False
    material = msgspec.msgpack.encode(
        (
            salt,
            request.kind,
            request.model,
            request.messages,
            request.prompt,
            request.seed,
            request.max_tokens,
            request.temperature,
            request.top_p,
        )
    )
    draw = int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")
    return draw < rate * 2**64


def other_model_text(request: GenerationRequest, words: int, salt: str = "") -> list[str]:
    """`words` pieces of another generator's text for `request` (synthetic words, another seed)."""
    material = msgspec.msgpack.encode(("other-model", salt, request.messages, request.prompt))
    return synthetic_words(int.from_bytes(hashlib.blake2b(material, digest_size=8).digest()), words)


def padded_text(honest: str, words: int, salt: str = "") -> list[str]:
    """The first half of `honest` (cut at a word boundary), then filler words to `words`."""
    half = honest[: len(honest) // 2]
    cut = half.rfind(" ")
    kept = half[:cut] if cut > 0 else half
    kept_words = len(kept.split())
    seed = int.from_bytes(hashlib.blake2b((salt + honest).encode(), digest_size=8).digest())
    filler = synthetic_words(seed, max(1, words - kept_words) + 1)[1:]
    return [kept, *filler] if kept else filler


class LyingBackend:
    """An honest backend that, for `lie_rate` of the requests, returns a lie instead."""

    def __init__(self, inner: Backend, config: LyingConfig) -> None:
        self.inner = inner
        self.config = config
        self.name = inner.name
        # What it has done, for tests.
        self.requests = 0
        self.lies = 0

    def models(self) -> list[str]:
        return self.inner.models()

    def scoring_models(self) -> list[str]:
        return self.inner.scoring_models()

    def features(self) -> dict[str, list[str]]:
        return self.inner.features()

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        chunks = self.inner.generate(request)
        try:
            if request.kind not in ("chat", "completion"):
                async for chunk in chunks:
                    yield chunk
                return
            self.requests += 1
            if not lies_to(request, self.config.lie_rate, self.config.salt):
                async for chunk in chunks:
                    yield chunk
                return
            self.lies += 1
            # The honest answer, to bill as if it had been sent (and to cut).
            texts: list[str] = []
            finish_reason, usage = "stop", Usage(prompt_tokens=0, completion_tokens=0)
            async for chunk in chunks:
                texts.append(chunk.text)
                if chunk.finish_reason is not None:
                    finish_reason, usage = chunk.finish_reason, chunk.usage or usage
        finally:
            await chunks.aclose()
        honest = "".join(texts)
        words = max(len(honest.split()), usage.completion_tokens // 2)
        if self.config.lie_mode == "padded":
            pieces = padded_text(honest, words, self.config.salt)
        else:
            pieces = other_model_text(request, words, self.config.salt)
        for piece in pieces:
            yield AnswerChunk(text=piece)
        yield AnswerChunk(finish_reason=finish_reason, usage=usage)

    async def aclose(self) -> None:
        await self.inner.aclose()
