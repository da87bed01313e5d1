"""The workers a client may seal to, each verified by the client itself.

The proxy hands out workers' RA-TLS certificates; the client trusts a
worker's HPKE key only through that certificate's verified evidence (DESIGN
§3, §5), so a proxy cannot slip in a key of its own. Verdicts are cached by
certificate hash.

Model pinning: a client may pin model names to Merkle roots
(``ClientConfig.pinned_models``). Workers announce and claim full ids
``name@sha256:<root>`` when they have roots; a worker whose claims name a
pinned model with another root, or without one, is refused for that model
(the reason is kept in ``refused``, keyed by worker; a worker left with no
model at all is refused outright). Apps may ask for the bare name:
:func:`resolve_model` maps it to the full id that verified workers serve, and
the request is routed and sealed on that id, so the proxy and the worker
see exactly the model the client accepted.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..crypto.sealing import Recipient
from ..tee.certs import parse_certificate
from ..tee.errors import AttestationError
from ..tee.evidence import Verdict
from ..tee.model_id import ModelPins, model_name
from ..tee.policy import PeerPolicy, verify_peer
from ..wire.messages import WorkerEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedWorker:
    """A worker whose certificate and evidence passed this client's policy."""

    key_id: str
    public_key: bytes
    recipient: Recipient
    models: frozenset[str]
    coefficient_milli: int
    max_active_requests: int
    active: int
    verdict: Verdict
    # The wallet it announced: with its key, the address of its stake on chain.
    wallet: str = ""
    # The models whose answers it can score: it may audit other workers of them.
    scoring: frozenset[str] = frozenset()
    # From its attested claims: GPU evidence (the `tee+gpu` tier) and its region.
    gpu_evidence: str = ""
    region: str = ""
    # Its reputation at the proxy that listed it (thousandths; -1: not known).
    proxy_reputation_milli: int = -1
    # The API features it announced, as (model, feature): tools, response_format, ...
    features: frozenset[tuple[str, str]] = frozenset()
    # The RA-TLS certificate it was verified from (evidence bundles carry it).
    certificate: bytes = b""


class WorkerVerifier:
    """Verifies directory entries under the client's policy, caching by certificate."""

    def __init__(self, policy: PeerPolicy, pins: ModelPins | None = None) -> None:
        self.policy = policy
        self.pins = pins if pins is not None else ModelPins()
        self._cache: dict[bytes, tuple[int, VerifiedWorker | None, str]] = {}
        self.refused: dict[str, str] = {}

    def known(self) -> list[VerifiedWorker]:
        """Every worker verified and still cached, whether or not a proxy lists it now."""
        return [worker for _, worker, _ in self._cache.values() if worker is not None]

    def _pin_refusal(self, model: str, claimed: list[str]) -> str | None:
        """Why ``model`` may not be used from this worker under the pins, or None."""
        refusal = self.pins.refusal(model)
        if refusal is None and model_name(model) in self.pins.roots and model not in claimed:
            # A pinned root counts only when the attested claims name it
            # (claims without models otherwise let announcements through).
            refusal = f"{model} is not in the worker's attested claims"
        return refusal

    def verify(self, entry: WorkerEntry, now: int) -> VerifiedWorker | None:
        cached = self._cache.get(entry.certificate)
        if cached is not None and cached[0] > now:
            worker = cached[1]
            if worker is None:
                return None
            if cached[2]:
                self.refused[entry.key_id] = cached[2]
            return _with_load(worker, entry)
        try:
            cert = parse_certificate(entry.certificate)
            verdict = verify_peer(cert, expected_role="worker", policy=self.policy, now=now)
            claims = cert.claims
            if not claims.hpke_public_key:
                raise AttestationError("no_hpke_key", "worker certificate carries no HPKE key")
            # A worker may only serve the models its attested claims name.
            offered = (
                frozenset(entry.models) & frozenset(claims.models)
                if claims.models
                else frozenset(entry.models)
            )
            verdicts = {m: self._pin_refusal(m, claims.models) for m in offered}
            refusals = sorted(r for r in verdicts.values() if r is not None)
            models = frozenset(m for m, r in verdicts.items() if r is None)
            if refusals and not models:
                raise AttestationError("model_root_not_allowed", "; ".join(refusals))
            worker = VerifiedWorker(
                key_id=cert.key_id,
                public_key=cert.public_key,
                recipient=Recipient(
                    key_id=cert.key_id, suite=claims.hpke_suite, public_key=claims.hpke_public_key
                ),
                models=models,
                coefficient_milli=entry.coefficient_milli,
                max_active_requests=entry.max_active_requests,
                active=entry.active,
                verdict=verdict,
                wallet=entry.wallet,
                scoring=frozenset(entry.scoring) & models,
                features=entry_features(entry, models),
                gpu_evidence=claims.gpu_evidence,
                region=claims.region,
                proxy_reputation_milli=entry.reputation_milli,
                certificate=entry.certificate,
            )
            partial = f"model_root_not_allowed: {'; '.join(refusals)}" if refusals else ""
            if partial:
                log.warning("worker %s refused for some models: %s", entry.key_id, partial)
                self.refused[entry.key_id] = partial
            else:
                self.refused.pop(entry.key_id, None)
            self._cache[entry.certificate] = (min(cert.not_after, now + 3600), worker, partial)
            return worker
        except AttestationError as exc:
            log.warning("worker %s refused: %s", entry.key_id, exc)
            self.refused[entry.key_id] = f"{exc.reason}: {exc}"
            self._cache[entry.certificate] = (now + 60, None, str(exc))
            return None


def _with_load(worker: VerifiedWorker, entry: WorkerEntry) -> VerifiedWorker:
    if (
        worker.active == entry.active
        and worker.coefficient_milli == entry.coefficient_milli
        and worker.wallet == entry.wallet
        and worker.proxy_reputation_milli == entry.reputation_milli
        and worker.scoring == frozenset(entry.scoring) & worker.models
        and worker.features == entry_features(entry, worker.models)
    ):
        return worker
    return dataclasses.replace(
        worker,
        coefficient_milli=entry.coefficient_milli,
        max_active_requests=entry.max_active_requests,
        active=entry.active,
        wallet=entry.wallet,
        scoring=frozenset(entry.scoring) & worker.models,
        features=entry_features(entry, worker.models),
        proxy_reputation_milli=entry.reputation_milli,
    )


def entry_features(entry: WorkerEntry, models: frozenset[str]) -> frozenset[tuple[str, str]]:
    """The (model, feature) pairs a directory entry offers, for the models it may serve."""
    return frozenset(
        (model, feature)
        for model, features in entry.features.items()
        if model in models
        for feature in features
    )


def features_of(worker: VerifiedWorker, model: str) -> frozenset[str]:
    """The API features ``worker`` offers for ``model``."""
    return frozenset(feature for served, feature in worker.features if served == model)


def resolve_model(workers: list[VerifiedWorker], model: str) -> str | None:
    """The model id to route a request for ``model`` on, or None if no worker serves it.

    ``model`` itself when a verified worker serves it under that id (a full
    id, or a bare name of a model without root); otherwise, for a bare name,
    the full id ``model@sha256:<root>`` that most verified workers serve
    (ties: the smallest id). Pins were applied when the workers were verified.
    """
    counts: dict[str, int] = {}
    for worker in workers:
        for served in worker.models:
            if served == model:
                return model
            if model_name(served) == model:
                counts[served] = counts.get(served, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda full: (-counts[full], full))


def served_models(workers: list[VerifiedWorker]) -> list[str]:
    """What an app can ask for: every served id, and the bare name of each full id."""
    names = {m for w in workers for m in w.models}
    return sorted(names | {model_name(m) for m in names})
