"""The trust tier an app asks for over HTTP, and the tiers the gateway can serve now
(registry/tiers.py has the tiers themselves)."""

from __future__ import annotations

from aiohttp import web

from ..openai_api import OpenAIError, ParsedRequest
from ..registry.tiers import REPLICAS, Tier, TierError, parse_tier
from ..tee.model_id import model_name
from .directory import VerifiedWorker

# The default trust tier: an attested worker.
TEE = Tier()
TIER_HEADER = "x-cocoon-tier"


def request_tier(request: web.BaseRequest, parsed: ParsedRequest) -> Tier:
    """The trust tier a request asks for: the `x-cocoon-tier` header, or
    `extra_body={"cocoon": {"tier": ..., "region": ...}}`; 400 if it is not one."""
    options = parsed.cocoon
    text = request.headers.get(TIER_HEADER, "")
    tier, region = options.get("tier", ""), options.get("region", "")
    if not isinstance(tier, str) or not isinstance(region, str):
        raise OpenAIError(
            400,
            "cocoon.tier and cocoon.region must be strings",
            param="cocoon",
            code="invalid_tier",
        )
    text = ",".join(p for p in (text, tier, f"region={region}" if region else "") if p)
    try:
        return parse_tier(text)
    except TierError as exc:
        raise OpenAIError(400, str(exc), param="cocoon.tier", code="invalid_tier") from exc


def served_tiers(workers: list[VerifiedWorker]) -> dict[str, list[str]]:
    """The tiers each model can be served at now, by the workers the client verified."""
    by_model: dict[str, dict[bytes, VerifiedWorker]] = {}
    for worker in workers:
        for model in worker.models:
            by_model.setdefault(model, {})[worker.public_key] = worker
            by_model.setdefault(model_name(model), {})[worker.public_key] = worker
    tiers: dict[str, list[str]] = {}
    for model, keyed in by_model.items():
        serving = list(keyed.values())
        names = ["tee"]
        if any(w.gpu_evidence for w in serving):
            names.append("tee+gpu")
        if len(serving) > 1 and any(w.scoring for w in serving):
            names.append("audited")
        if len(serving) >= REPLICAS:
            names.append("replicated")
        names += sorted({f"region={w.region}" for w in serving if w.region})
        tiers[model] = names
    return tiers
