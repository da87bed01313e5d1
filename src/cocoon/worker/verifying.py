"""A worker as a verifier: it judges audit evidence and signs verdicts (DESIGN §11).

A request of kind "verify" carries evidence of another worker's answer
(audit/evidence.py) and the terms of a slash. This worker checks the
evidence through (the receipt, the envelope, the answer's digest), scores the
answer itself with its own model in one prefill, and judges the scores
against the audited request's sampling. If the answer is not one the model
could have given, it signs the verdict with its node key: the root counts it
when that key is on its verifier list, and a quorum of such signatures
slashes the audited worker's stake. It never signs on evidence it could not
check, nor about its own answers.

Wraps the worker's backend: every other kind passes through.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..audit.evidence import EvidenceError, evidence_hash, open_evidence, unpack_verify
from ..audit.scores import ScoresError, unpack_scores
from ..audit.verdict import Sampling, judge
from ..crypto.verdict_cell import sign_verdict
from ..inference import AnswerChunk, GenerationRequest, Usage
from .answering import batches, batches_of
from .backends.base import Backend, BackendError

log = logging.getLogger(__name__)


class VerifyingBackend:
    """The worker's backend, plus the "verify" kind for the models it can score."""

    def __init__(self, inner: Backend, key: Ed25519PrivateKey, network: str) -> None:
        self.inner = inner
        self.name = inner.name
        self._key = key
        self._public = key.public_key().public_bytes_raw()
        self.network = network
        self.verdicts_signed = 0
        self.verdicts_refused = 0

    def models(self) -> list[str]:
        return self.inner.models()

    def scoring_models(self) -> list[str]:
        return self.inner.scoring_models()

    def features(self) -> dict[str, list[str]]:
        return self.inner.features()

    def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        if request.kind == "verify":
            return self._verify(request)
        return self.inner.generate(request)

    def generate_batches(self, request: GenerationRequest) -> AsyncIterator[list[AnswerChunk]]:
        """The inner backend's batches (answering.batches), so wrapping costs nothing."""
        if request.kind == "verify":
            return batches_of(self._verify(request))
        return batches(self.inner, request)

    async def _verify(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        try:
            verify, evidence = unpack_verify(request.evidence)
            opened = open_evidence(evidence, self.network)
        except EvidenceError as exc:
            raise BackendError("bad_evidence", str(exc), 400) from exc
        audited = opened.request
        if audited.model != request.model or audited.model not in self.scoring_models():
            raise BackendError("unsupported", f"this worker cannot score {audited.model!r}", 400)
        if opened.receipt.worker_key == self._public:
            raise BackendError("invalid_request", "a worker does not judge its own answer", 400)
        scoring = msgspec.structs.replace(
            audited, kind="score", answer=opened.answer, stream=False, evidence=b""
        )
        packed = b""
        usage: Usage | None = None
        chunks = self.inner.generate(scoring)
        try:
            async for chunk in chunks:
                packed = chunk.scores or packed
                usage = chunk.usage or usage
        finally:
            await chunks.aclose()
        try:
            scores = unpack_scores(packed)
        except ScoresError as exc:
            raise BackendError("upstream_error", f"scoring failed: {exc}") from exc
        verdict = judge(scores, Sampling.of(audited))
        signed = b""
        if not verdict.passed:
            terms = verify.terms
            signed = sign_verdict(
                self._key,
                terms.network_id,
                opened.receipt.worker_key,
                terms.stake,
                evidence_hash(verify.evidence),
                terms.slash_bp,
                terms.nonce,
            )
            self.verdicts_signed += 1
        else:
            self.verdicts_refused += 1
        log.info(
            "verified request %s of worker %s: %s (%s, top1 %.2f, %d tokens)",
            opened.receipt.request_id,
            opened.receipt.worker_key.hex()[:16],
            "FALSE, verdict signed" if signed else "plausible, no verdict",
            verdict.reason,
            verdict.top1,
            verdict.tokens,
        )
        yield AnswerChunk(
            scores=packed,
            verdict=signed,
            finish_reason="stop",
            usage=usage or Usage(prompt_tokens=0, completion_tokens=0),
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
