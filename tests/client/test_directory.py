"""The client trusts a worker's HPKE key only through the worker's own certificate."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.client.directory import WorkerVerifier, choose_candidates
from cocoon.crypto.hpke_keys import HpkeKeyPair
from cocoon.tee.certs import make_attested_certificate, raw_public_key
from cocoon.tee.claims import Claims
from cocoon.tee.evidence import NoneProvider
from cocoon.tee.policy import PeerPolicy
from cocoon.wire.messages import WorkerEntry

NOW = int(time.time())


def certificate(role: str = "worker", models: list[str] | None = None) -> bytes:
    key = Ed25519PrivateKey.generate()
    hpke = HpkeKeyPair.generate()
    claims = Claims(
        role=role,
        network="n",
        tls_public_key=raw_public_key(key),
        hpke_suite=hpke.suite,
        hpke_public_key=hpke.public_bytes() if role == "worker" else b"",
        models=models if models is not None else ["m"],
        version="t",
        issued_at=NOW,
    )
    return make_attested_certificate(key, claims, NoneProvider(), NOW)


def entry(cert: bytes, models: list[str], active: int = 0) -> WorkerEntry:
    return WorkerEntry("id", cert, models, 1000, 4, active)


def test_untrusted_workers_are_refused_unless_policy_allows() -> None:
    cert = certificate()
    strict = WorkerVerifier(PeerPolicy(allow_untrusted=False, network="n"))
    assert strict.verify(entry(cert, ["m"]), NOW) is None
    assert "untrusted_provider" in strict.refused["id"]
    lax = WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"))
    worker = lax.verify(entry(cert, ["m"]), NOW)
    assert worker is not None and not worker.verdict.trusted


def test_a_proxy_cannot_add_models_the_worker_did_not_claim() -> None:
    verifier = WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"))
    worker = verifier.verify(entry(certificate(models=["m"]), ["m", "expensive"]), NOW)
    assert worker is not None and worker.models == frozenset({"m"})


def test_a_proxy_certificate_is_not_a_worker() -> None:
    verifier = WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"))
    assert verifier.verify(entry(certificate(role="proxy"), ["m"]), NOW) is None


def test_tampered_certificates_are_refused() -> None:
    cert = bytearray(certificate())
    cert[len(cert) // 2] ^= 1
    verifier = WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"))
    assert verifier.verify(entry(bytes(cert), ["m"]), NOW) is None


def test_candidates_prefer_free_workers_within_price() -> None:
    verifier = WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"))
    busy = verifier.verify(entry(certificate(), ["m"], active=4), NOW)
    idle = verifier.verify(entry(certificate(), ["m"], active=0), NOW)
    assert busy is not None and idle is not None
    chosen = choose_candidates([busy, idle], "m", 1000, 1)
    assert chosen == [idle]
    assert choose_candidates([busy, idle], "m", 999, 3) == []
