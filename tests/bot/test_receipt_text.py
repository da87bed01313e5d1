"""/receipt's text names the kind of TEE and, for SEV-SNP, the launch measurement, TCB
and product: from verdicts the real verifiers return on simulated evidence."""

from __future__ import annotations

from typing import Any

from cocoon.bot.receipt_text import receipt_message
from cocoon.tee.evidence import SIMULATED_PROVIDERS, Verdict, tee_kind
from cocoon.tee.sim_snp import SimSnpProvider, platform_for_image, sim_snp_verifier
from cocoon.tee.sim_tdx import SimTdxProvider, local_build_platform, shared_pki, sim_tdx_verifier

DATA = bytes(range(64))
NOW = 1_760_000_000


def _details(verdict: Verdict) -> dict[str, Any]:
    """The worker part of /v1/answers/{id} as web/answers.py writes it."""
    return {
        "request_id": "req-1",
        "model": "synthetic-small",
        "worker": {
            "key_id": "2ab4bc92206ffd08",
            "trusted": verdict.trusted,
            "provider": verdict.provider,
            "tee": tee_kind(verdict.provider),
            "simulated": verdict.provider in SIMULATED_PROVIDERS,
            "attestation": verdict.reason,
            "image_hash": verdict.measurements.get("image_hash"),
            "measurements": verdict.measurements,
        },
        "receipt": {"signature": "valid", "prompt_tokens": 3, "completion_tokens": 5},
        "tokens": {"prompt": 3, "completion": 5},
        "amount_nano": None,
    }


def test_an_snp_worker_is_named_with_measurement_tcb_and_product() -> None:
    platform = platform_for_image("receipt")
    evidence = SimSnpProvider(platform=platform).evidence(DATA)
    verdict = sim_snp_verifier(trusted=True).verify(evidence, DATA, NOW)
    lines = receipt_message(_details(verdict)).splitlines()
    assert "TEE: SEV-SNP, simulated (not hardware) · sim-snp" in lines
    assert "Product: Milan" in lines
    assert f"Launch measurement: {platform.measurement.hex()}" in lines
    assert "TCB: bootloader 4, tee 0, snp 22, microcode 213" in lines
    assert f"Image hash: {platform.image_hash}" in lines


def test_a_tdx_worker_is_named_with_its_tcb_status() -> None:
    evidence = SimTdxProvider(shared_pki(), local_build_platform()).evidence(DATA)
    verdict = sim_tdx_verifier(trusted=True).verify(evidence, DATA, NOW)
    text = receipt_message(_details(verdict))
    assert "TEE: TDX, simulated (not hardware) · sim-tdx" in text.splitlines()
    assert "TCB: UpToDate" in text.splitlines()
    assert "Launch measurement" not in text


def test_a_worker_without_attestation() -> None:
    details = _details(Verdict(trusted=False, provider="none", reason="no hardware attestation"))
    text = receipt_message(details)
    assert "TEE: none (no hardware attestation)" in text.splitlines()
    assert "Image hash: none (no attestation)" in text.splitlines()
