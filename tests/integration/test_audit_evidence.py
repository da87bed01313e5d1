"""Audit evidence proves what a worker was asked and answered; verifier workers judge it."""

from __future__ import annotations

import msgspec
import pytest

from cocoon.audit.evidence import (
    Evidence,
    EvidenceError,
    VerdictTerms,
    VerifyRequest,
    evidence_hash,
    open_evidence,
    pack,
)
from cocoon.client.calls import AnswerResult
from cocoon.client.choosing import Selection
from cocoon.client.session import ProxySession
from cocoon.crypto.verdict_cell import decode_signed_verdict
from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from harness.network import NETWORK

from .conftest import InProcessNetwork
from .test_verified_work import liar

MODEL = "synthetic-small"
QUESTION = GenerationRequest(
    kind="chat",
    model=MODEL,
    messages=[ChatMessage(role="user", content="what is proven here")],
    max_tokens=24,
    stream=False,
)


async def ask(
    session: ProxySession, request: GenerationRequest, only: bytes | None = None
) -> tuple[AnswerResult, list[AnswerChunk]]:
    request_id = session.new_request_id()
    selection = Selection(only=frozenset({only})) if only is not None else Selection()
    call = await session.seal(request_id, request, selection=selection)
    result = AnswerResult(request_id)
    chunks = [chunk async for chunk in session.answer(call, result)]
    return result, chunks


def evidence_of(result: AnswerResult) -> Evidence:
    assert result.receipt_bytes is not None
    return Evidence(
        network=NETWORK,
        envelope=result.envelope,
        content_key=result.content_key,
        sealed=list(result.sealed),
        receipt=result.receipt_bytes,
    )


async def test_evidence_opens_to_the_request_and_answer_and_nothing_else(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    session = inproc.start_session()
    result, chunks = await ask(session, QUESTION)
    evidence = evidence_of(result)
    opened = open_evidence(evidence, NETWORK)
    assert opened.request == QUESTION
    assert opened.answer == "".join(c.text for c in chunks) and opened.answer
    assert opened.receipt.request_id == result.request_id
    # Every part is bound: change any and the evidence falls apart.
    other, _ = await ask(session, QUESTION)
    tampered = [
        msgspec.structs.replace(evidence, content_key=other.content_key),
        msgspec.structs.replace(evidence, envelope=other.envelope),
        msgspec.structs.replace(evidence, sealed=evidence.sealed[:-1]),
        msgspec.structs.replace(evidence, sealed=list(other.sealed)),
        msgspec.structs.replace(evidence, receipt=other.receipt_bytes or b""),
        msgspec.structs.replace(evidence, network="elsewhere"),
    ]
    for bad in tampered:
        with pytest.raises(EvidenceError):
            open_evidence(bad, NETWORK)


async def test_a_verifier_signs_a_verdict_on_a_lie_and_not_on_the_truth(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    honest = await inproc.start_worker("honest")
    lying = await inproc.start_worker("liar", wrap=liar(1.0))
    verifier = await inproc.start_worker("verifier")
    session = inproc.start_session()
    terms = VerdictTerms(network_id=-239, stake="0:" + "ab" * 32, slash_bp=1000, nonce=7)

    async def judged(answerer: bytes) -> bytes:
        result, _ = await ask(session, QUESTION, only=answerer)
        packed = pack(evidence_of(result))
        request = GenerationRequest(
            kind="verify",
            model=MODEL,
            evidence=pack(VerifyRequest(evidence=packed, terms=terms)),
            stream=False,
        )
        verifier_key = verifier.credentials.identity.public_key
        track, chunks = await ask(session, request, only=verifier_key)
        assert track.worker is not None and track.worker.public_key == verifier_key
        assert chunks[-1].scores
        if chunks[-1].verdict:
            signed = decode_signed_verdict(chunks[-1].verdict)
            assert signed.verdict.evidence_hash == evidence_hash(packed)
            assert signed.verdict.worker_key == answerer
            assert signed.verifier_key == verifier_key
        return chunks[-1].verdict

    assert await judged(lying.credentials.identity.public_key)
    assert not await judged(honest.credentials.identity.public_key)
