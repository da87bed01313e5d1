"""Optional NVIDIA GPU evidence: skipped cleanly without SDK or GPU, bound into claims with them.

No GPU machine was available for this test suite: the SDK is replaced by a
fake module with the calls cocoon makes (``nv_attestation_sdk.attestation``).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import types
from pathlib import Path

import msgspec
import pytest

from cocoon.node import make_credentials
from cocoon.tee.certs import parse_certificate
from cocoon.tee.claims import canonical_bytes, claims_from_canonical_bytes
from cocoon.tee.errors import AttestationError, EvidenceError
from cocoon.tee.gpu import (
    NvidiaGpuSource,
    collect_gpu_evidence,
    gpu_nonce,
    gpu_source_by_name,
)
from cocoon.tee.policy import PeerPolicy, verify_peer

KEY = b"\x07" * 32
TOKEN = "eyJhbGciOiJFUzM4NCJ9.fake-gpu-token.sig"


def fake_sdk(
    monkeypatch: pytest.MonkeyPatch,
    *,
    evidence: list[dict[str, str]] | Exception | None = None,
    passes: bool = True,
) -> dict[str, object]:
    """Install a fake nv_attestation_sdk; return what the worker asked of it."""
    seen: dict[str, object] = {}

    class Attestation:
        def set_name(self, name: str) -> None:
            seen["name"] = name

        def set_nonce(self, nonce: str) -> None:
            seen["nonce"] = nonce

        def add_verifier(self, device: int, env: int, url: str, policy: str) -> None:
            seen["verifier"] = (device, env)

        def get_evidence(self) -> list[dict[str, str]]:
            if isinstance(evidence, Exception):
                raise evidence
            return [{"gpu": "report"}] if evidence is None else evidence

        def attest(self, evidence_list: list[dict[str, str]]) -> bool:
            seen["attested"] = evidence_list
            return passes

        def get_token(self) -> str:
            return TOKEN

    module = types.ModuleType("nv_attestation_sdk.attestation")
    module.Attestation = Attestation  # type: ignore[attr-defined]
    module.Devices = types.SimpleNamespace(GPU=2)  # type: ignore[attr-defined]
    module.Environment = types.SimpleNamespace(LOCAL=2)  # type: ignore[attr-defined]
    package = types.ModuleType("nv_attestation_sdk")
    package.attestation = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nv_attestation_sdk", package)
    monkeypatch.setitem(sys.modules, "nv_attestation_sdk.attestation", module)
    return seen


def no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, "nv_attestation_sdk", None)
    monkeypatch.setitem(sys.modules, "nv_attestation_sdk.attestation", None)


def gpu_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cocoon.tee.gpu"]


def test_without_the_sdk_it_is_skipped_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_sdk(monkeypatch)
    caplog.set_level(logging.INFO)
    assert collect_gpu_evidence("nvidia", KEY) is None
    assert gpu_logs(caplog) == ["GPU evidence skipped: nv-attestation-sdk is not installed"]


@pytest.mark.parametrize("evidence", [[], RuntimeError("NVML: no GPU found")])
def test_without_a_gpu_it_is_skipped_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    evidence: list[dict[str, str]] | Exception,
) -> None:
    fake_sdk(monkeypatch, evidence=evidence)
    caplog.set_level(logging.INFO)
    assert collect_gpu_evidence("nvidia", KEY) is None
    logs = gpu_logs(caplog)
    assert len(logs) == 1 and logs[0].startswith("GPU evidence skipped: no confidential")


def test_failed_gpu_attestation_is_not_claimed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_sdk(monkeypatch, passes=False)
    assert collect_gpu_evidence("nvidia", KEY) is None
    assert [r.levelname for r in caplog.records if r.name == "cocoon.tee.gpu"] == ["WARNING"]


def test_passed_gpu_attestation_is_bound_to_the_node_key(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_sdk(monkeypatch)
    gpu = collect_gpu_evidence("nvidia", KEY)
    assert gpu is not None
    assert seen["nonce"] == gpu_nonce(KEY).hex() == gpu.nonce.hex()
    assert seen["verifier"] == (2, 2)  # Devices.GPU, Environment.LOCAL
    assert gpu.claim == "nvidia:sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
    assert gpu_nonce(KEY) != gpu_nonce(b"\x08" * 32)


def test_no_source_configured_collects_nothing_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert collect_gpu_evidence("", KEY) is None
    assert gpu_logs(caplog) == []


def test_unknown_source_is_an_error() -> None:
    assert isinstance(gpu_source_by_name("nvidia"), NvidiaGpuSource)
    with pytest.raises(AttestationError) as info:
        gpu_source_by_name("amd")
    assert info.value.reason == "unknown_gpu_source"


def test_worker_claims_gpu_evidence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_sdk(monkeypatch)
    credentials = make_credentials(
        role="worker", network="n", data_dir=tmp_path, models=["m"], gpu_evidence="nvidia"
    )
    assert credentials.gpu is not None
    assert credentials.gpu.nonce == gpu_nonce(credentials.identity.public_key)
    assert credentials.claims.gpu_evidence == credentials.gpu.claim
    assert credentials.trust_summary()["gpu_evidence"] == credentials.gpu.claim
    cert = parse_certificate(credentials.certificate)
    assert cert.claims.gpu_evidence == credentials.gpu.claim
    assert claims_from_canonical_bytes(canonical_bytes(cert.claims)) == cert.claims
    # The claim is covered by the evidence: the peer check recomputes report data.
    policy = PeerPolicy(network="n", allow_untrusted=True)
    now = credentials.claims.issued_at
    verify_peer(cert, expected_role="worker", policy=policy, now=now)
    forged = msgspec.structs.replace(
        cert, claims=msgspec.structs.replace(cert.claims, gpu_evidence="")
    )
    with pytest.raises(EvidenceError) as info:
        verify_peer(forged, expected_role="worker", policy=policy, now=now)
    assert info.value.reason == "report_data_mismatch"
    renewed = parse_certificate(credentials.renew())
    assert renewed.claims.gpu_evidence == credentials.gpu.claim


def test_worker_without_gpu_claims_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_sdk(monkeypatch)
    credentials = make_credentials(
        role="worker", network="n", data_dir=tmp_path, models=["m"], gpu_evidence="nvidia"
    )
    assert credentials.gpu is None and credentials.claims.gpu_evidence == ""
    assert "gpu_evidence" not in credentials.trust_summary()
