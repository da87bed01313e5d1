"""The client trusts a worker's HPKE key only through the worker's own certificate."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.client.choosing import choose
from cocoon.client.directory import (
    WorkerVerifier,
    resolve_model,
    served_models,
)
from cocoon.crypto.hpke_keys import HpkeKeyPair
from cocoon.tee.certs import make_attested_certificate, raw_public_key
from cocoon.tee.claims import Claims
from cocoon.tee.evidence import NoneProvider
from cocoon.tee.model_id import ModelPins
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


ROOT_A = "aa" * 32
ROOT_B = "bb" * 32
LLAMA_A = f"llama@sha256:{ROOT_A}"
LLAMA_B = f"llama@sha256:{ROOT_B}"


def pinned_verifier(pins: dict[str, str | list[str]]) -> WorkerVerifier:
    return WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"), ModelPins.parse(pins))


def pinned_entry(models: list[str], key_id: str) -> WorkerEntry:
    return WorkerEntry(key_id, certificate(models=models), models, 1000, 4, 0)


def test_a_worker_claiming_another_root_is_refused_for_that_model() -> None:
    verifier = pinned_verifier({"llama": LLAMA_A})
    assert verifier.verify(pinned_entry([LLAMA_B], "other-root"), NOW) is None
    assert verifier.refused["other-root"].startswith("model_root_not_allowed: ")
    assert f"{LLAMA_B} is not a pinned root of llama" in verifier.refused["other-root"]
    # A bare claim of a pinned name proves no root: refused too.
    assert verifier.verify(pinned_entry(["llama"], "bare"), NOW) is None
    assert "claims no model root" in verifier.refused["bare"]
    # The cached refusal keeps its reason.
    assert verifier.verify(pinned_entry([LLAMA_B], "other-root"), NOW) is None


def test_a_worker_with_the_pinned_root_is_used() -> None:
    verifier = pinned_verifier({"llama": [ROOT_A]})
    worker = verifier.verify(pinned_entry([LLAMA_A], "good"), NOW)
    assert worker is not None and worker.models == frozenset({LLAMA_A})
    assert "good" not in verifier.refused
    assert resolve_model([worker], "llama") == LLAMA_A
    assert resolve_model([worker], LLAMA_A) == LLAMA_A
    assert choose([worker], LLAMA_A, 1000, 3) == [worker]


def test_a_worker_is_refused_only_for_the_models_it_fails() -> None:
    verifier = pinned_verifier({"llama": LLAMA_A})
    worker = verifier.verify(pinned_entry([LLAMA_B, "other"], "mixed"), NOW)
    assert worker is not None and worker.models == frozenset({"other"})
    assert "model_root_not_allowed" in verifier.refused["mixed"]
    assert resolve_model([worker], "llama") is None


def test_bare_names_resolve_to_the_most_served_full_id() -> None:
    verifier = WorkerVerifier(PeerPolicy(allow_untrusted=True, network="n"))
    a1 = verifier.verify(pinned_entry([LLAMA_A], "a1"), NOW)
    a2 = verifier.verify(pinned_entry([LLAMA_A], "a2"), NOW)
    b = verifier.verify(pinned_entry([LLAMA_B, "m"], "b"), NOW)
    assert a1 is not None and a2 is not None and b is not None
    assert resolve_model([a1, a2, b], "llama") == LLAMA_A
    assert resolve_model([b], "llama") == LLAMA_B
    assert resolve_model([a1, b], "m") == "m"
    assert resolve_model([a1], "qwen") is None
    assert served_models([a1, b]) == sorted({"llama", LLAMA_A, LLAMA_B, "m"})


def test_a_pinned_root_must_be_in_the_attested_claims() -> None:
    verifier = pinned_verifier({"llama": LLAMA_A})
    # Claims without models: announcements pass for unpinned names only.
    entry = WorkerEntry("unclaimed", certificate(models=[]), [LLAMA_A, "m"], 1000, 4, 0)
    worker = verifier.verify(entry, NOW)
    assert worker is not None and worker.models == frozenset({"m"})
    assert "not in the worker's attested claims" in verifier.refused["unclaimed"]
