"""The workers a client may seal to, each verified by the client itself.

The proxy hands out workers' RA-TLS certificates; the client trusts a
worker's HPKE key only through that certificate's verified evidence (DESIGN
§3, §5), so a proxy cannot slip in a key of its own. Verdicts are cached by
certificate hash.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ..crypto.sealing import Recipient
from ..tee.certs import parse_certificate
from ..tee.errors import AttestationError
from ..tee.evidence import Verdict
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


class WorkerVerifier:
    """Verifies directory entries under the client's policy, caching by certificate."""

    def __init__(self, policy: PeerPolicy) -> None:
        self.policy = policy
        self._cache: dict[bytes, tuple[int, VerifiedWorker | None, str]] = {}
        self.refused: dict[str, str] = {}

    def verify(self, entry: WorkerEntry, now: int) -> VerifiedWorker | None:
        cached = self._cache.get(entry.certificate)
        if cached is not None and cached[0] > now:
            worker = cached[1]
            if worker is None:
                return None
            return _with_load(worker, entry)
        try:
            cert = parse_certificate(entry.certificate)
            verdict = verify_peer(cert, expected_role="worker", policy=self.policy, now=now)
            claims = cert.claims
            if not claims.hpke_public_key:
                raise AttestationError("no_hpke_key", "worker certificate carries no HPKE key")
            worker = VerifiedWorker(
                key_id=cert.key_id,
                public_key=cert.public_key,
                recipient=Recipient(
                    key_id=cert.key_id, suite=claims.hpke_suite, public_key=claims.hpke_public_key
                ),
                # A worker may only serve the models its attested claims name.
                models=frozenset(entry.models) & frozenset(claims.models)
                if claims.models
                else frozenset(entry.models),
                coefficient_milli=entry.coefficient_milli,
                max_active_requests=entry.max_active_requests,
                active=entry.active,
                verdict=verdict,
            )
            self.refused.pop(entry.key_id, None)
            self._cache[entry.certificate] = (min(cert.not_after, now + 3600), worker, "")
            return worker
        except AttestationError as exc:
            log.warning("worker %s refused: %s", entry.key_id, exc)
            self.refused[entry.key_id] = f"{exc.reason}: {exc}"
            self._cache[entry.certificate] = (now + 60, None, str(exc))
            return None


def _with_load(worker: VerifiedWorker, entry: WorkerEntry) -> VerifiedWorker:
    if worker.active == entry.active and worker.coefficient_milli == entry.coefficient_milli:
        return worker
    return VerifiedWorker(
        worker.key_id,
        worker.public_key,
        worker.recipient,
        worker.models,
        entry.coefficient_milli,
        entry.max_active_requests,
        entry.active,
        worker.verdict,
    )


def choose_candidates(
    workers: list[VerifiedWorker], model: str, max_coefficient_milli: int, k: int
) -> list[VerifiedWorker]:
    """Up to k workers of `model` within the price bound, least loaded first, ties random."""
    eligible = [
        w for w in workers if model in w.models and w.coefficient_milli <= max_coefficient_milli
    ]
    random.shuffle(eligible)
    eligible.sort(key=lambda w: w.active / max(1, w.max_active_requests))
    return eligible[:k]
