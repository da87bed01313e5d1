"""One answer as the web app shows it ("what ran where") and as its evidence bundle.

Both read the client's bounded record of recent answers (`ProxyPool.results`,
the newest 4096): the worker that served the answer, as this client verified
it; the receipt it signed; what it cost and on which channel. Conversations
are not kept here: the page keeps them.
"""

from __future__ import annotations

import time
from typing import Any

from ..client.calls import AnswerResult
from ..client.proxies import ProxyPool
from ..crypto.errors import CryptoError
from ..crypto.receipts import receipt_to_json, verify_receipt
from ..evidence.bundle import EvidenceBundle, Price, make_bundle, tier_prices_of
from ..evidence.collateral import collateral_for
from ..evidence.errors import BundleError
from ..evidence.snp import SNP_PROVIDERS, snp_parts
from ..registry.rules import image_of, model_hash_kind
from ..tee.certs import parse_certificate
from ..tee.errors import AttestationError
from ..tee.evidence import SIMULATED_PROVIDERS, tee_kind


class AnswerNotFound(Exception):
    """No answer with a receipt under this id among the recent ones."""


def recent_answer(pool: ProxyPool, request_id: str) -> AnswerResult:
    result = pool.results.get(request_id)
    if result is None or result.receipt is None or result.receipt_bytes is None:
        raise AnswerNotFound(request_id)
    return result


def answer_details(pool: ProxyPool, result: AnswerResult) -> dict[str, Any]:
    """What ran where for one answer, as the gateway verified it."""
    receipt = result.receipt
    assert receipt is not None and result.receipt_bytes is not None
    worker = result.worker
    try:
        verify_receipt(result.receipt_bytes, pool.config.network)
        signature = "valid"
    except CryptoError as exc:
        signature = f"invalid: {exc}"
    verdict = worker.verdict if worker is not None else None
    return {
        "request_id": result.request_id,
        "model": receipt.model,
        "model_id_kind": model_hash_kind(receipt.model),
        "worker": None
        if worker is None or verdict is None
        else {
            "key_id": worker.key_id,
            "public_key": worker.public_key.hex(),
            "trusted": verdict.trusted,
            "provider": verdict.provider,
            "tee": tee_kind(verdict.provider),
            "simulated": verdict.provider in SIMULATED_PROVIDERS,
            "attestation": verdict.reason,
            "image_hash": image_of(verdict),
            "measurements": verdict.measurements,
            "gpu_evidence": worker.gpu_evidence or None,
            "region": worker.region or None,
            "hpke_suite": worker.recipient.suite,
        },
        "root": _root_facts(pool, result),
        "receipt": {
            **receipt_to_json(receipt),
            "signature": signature,
            "final": receipt.final,
        },
        "tokens": {
            "prompt": receipt.prompt_tokens,
            "cached_prompt": receipt.cached_prompt_tokens,
            "completion": receipt.completion_tokens,
            "reasoning": receipt.reasoning_tokens,
        },
        "amount_nano": result.amount_nano,
        "channel": result.channel or None,
        "network": pool.config.network,
        "evidence": f"/v1/evidence/{result.request_id}",
    }


def _root_facts(pool: ProxyPool, result: AnswerResult) -> dict[str, Any] | None:
    """What the root contract (as this client follows it) says of the model and image."""
    follower = pool.follower
    if follower is None or follower.version < 0 or result.receipt is None:
        return None
    rules = follower.rules
    worker = result.worker
    image = image_of(worker.verdict) if worker is not None else None
    return {
        "address": follower.root_address,
        "version": rules.version,
        "model_listed": rules.model_allowed(result.receipt.model),
        "image": image,
        "image_listed": None
        if worker is None or image is None
        else rules.image_refusal("worker", worker.verdict) is None,
    }


def evidence_bundle(pool: ProxyPool, result: AnswerResult) -> EvidenceBundle:
    """The bundle `cocoon verify` checks offline; BundleError if the evidence is not kept."""
    receipt = result.receipt
    worker = result.worker
    assert receipt is not None and result.receipt_bytes is not None
    if worker is None or not worker.certificate:
        raise BundleError("no_certificate", "the worker's certificate is not kept any more")
    try:
        cert = parse_certificate(worker.certificate)
    except AttestationError as exc:
        raise BundleError("bad_certificate", str(exc)) from None
    quote = cert.evidence.quote
    collateral = collateral_for(
        cert.evidence.provider,
        quote,
        receipt.finished_ms // 1000,
        pool.config.tee.collateral_dir,
        pool.config.tee.snp_crl_file,
    )
    price = None
    if result.amount_nano is not None and result.prices is not None:
        price = Price(
            amount_nano=result.amount_nano,
            prices=tier_prices_of(result.prices),
            channel=result.channel,
        )
    details = answer_details(pool, result)
    return make_bundle(
        network=pool.config.network,
        request_id=result.request_id,
        model=receipt.model,
        receipt=result.receipt_bytes,
        certificate=worker.certificate,
        quote=quote,
        collateral=collateral,
        price=price,
        snp=snp_parts(quote) if cert.evidence.provider in SNP_PROVIDERS else None,
        gateway={
            "verdict": details["worker"],
            "root": details["root"],
            "made_at": int(time.time()),
        },
    )
