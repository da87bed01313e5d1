"""Simulated SEV-SNP through the real verifier: the policy's refusals, RA-TLS peers,
and which nodes trust simulated evidence of which kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.config import TeeConfig
from cocoon.node import peer_policy, peer_verifiers
from cocoon.tee import make_attested_certificate, parse_certificate
from cocoon.tee.claims import report_data
from cocoon.tee.errors import AttestationError, EvidenceError, PolicyError
from cocoon.tee.evidence import Evidence, tee_kind
from cocoon.tee.policy import verify_peer
from cocoon.tee.providers import verifier_by_name
from cocoon.tee.sim_snp import (
    SimSnpProvider,
    local_build_platform,
    platform_for_image,
    sim_snp_verifier,
)
from cocoon.tee.sim_tdx import SimTdxProvider
from cocoon.tee.snp_policy import (
    SnpEvidence,
    SnpPolicy,
    decode_snp_evidence,
    encode_snp_evidence,
)
from cocoon.tee.snp_report import parse_snp_report

from .conftest import NETWORK, NOW, claims_for

DATA = bytes(range(64))


def _verify(provider: SimSnpProvider, policy: SnpPolicy | None = None, data: bytes = DATA) -> str:
    verdict = sim_snp_verifier(policy, trusted=True).verify(provider.evidence(DATA), data, NOW)
    return verdict.reason


def _refusal(provider: SimSnpProvider, policy: SnpPolicy | None = None, **kw: bytes) -> str:
    with pytest.raises(AttestationError) as info:
        _verify(provider, policy, **kw)
    return info.value.reason


def test_a_simulated_report_verifies_with_its_measurements() -> None:
    provider = SimSnpProvider(platform=local_build_platform())
    verdict = sim_snp_verifier(trusted=True).verify(provider.evidence(DATA), DATA, NOW)
    assert verdict.trusted and verdict.provider == "sim-snp"
    assert verdict.reason == "simulated SEV-SNP report verified (Milan)"
    m = verdict.measurements
    assert m["image_hash"] == provider.platform.image_hash and len(m["measurement"]) == 96
    assert (m["tcb_snp"], m["tcb_microcode"], m["debug"]) == ("22", "213", "false")


def test_report_data_of_other_claims_is_refused() -> None:
    assert _refusal(SimSnpProvider(), data=bytes(64)) == "report_data_mismatch"


@pytest.mark.parametrize(
    ("platform", "policy", "reason"),
    [
        (platform_for_image("x", debug=True), SnpPolicy(), "debug_guest"),
        (platform_for_image("x"), SnpPolicy(min_tcb={"snp": 23}), "tcb_too_low"),
        (platform_for_image("x"), SnpPolicy(min_tcb={"microcode": 214}), "tcb_too_low"),
        (platform_for_image("x"), SnpPolicy(image_hashes=["00" * 32]), "measurement_not_allowed"),
        (platform_for_image("x"), SnpPolicy(measurements=["00" * 48]), "measurement_not_allowed"),
        (platform_for_image("x"), SnpPolicy(id_key_digests=["11" * 48]), "id_key_not_allowed"),
        (platform_for_image("x"), SnpPolicy(allow_smt=False), "smt_not_allowed"),
    ],
)
def test_policy_refusals(platform: object, policy: SnpPolicy, reason: str) -> None:
    provider = SimSnpProvider(platform=platform)  # type: ignore[arg-type]
    assert _refusal(provider, policy) == reason


def test_policy_pins_that_match_accept() -> None:
    platform = platform_for_image("x")
    policy = SnpPolicy(
        image_hashes=[platform.image_hash.upper()],
        measurements=[platform.measurement.hex()],
        id_key_digests=["00" * 48],
        min_tcb={"bootloader": 4, "snp": 22, "microcode": 213},
    )
    assert "verified" in _verify(SimSnpProvider(platform=platform), policy)


def test_an_unknown_tcb_component_is_a_policy_mistake() -> None:
    with pytest.raises(ValueError, match="unknown components"):
        SnpPolicy(min_tcb={"sup": 1})


def test_the_default_verifier_checks_but_does_not_trust_simulated_evidence() -> None:
    verdict = verifier_by_name("sim-snp").verify(SimSnpProvider().evidence(DATA), DATA, NOW)
    assert not verdict.trusted and "not trusted here" in verdict.reason


def test_simulated_evidence_under_amds_roots_is_chain_invalid() -> None:
    sim = SimSnpProvider().evidence(DATA)
    with pytest.raises(EvidenceError) as info:
        verifier_by_name("sev-snp").verify(Evidence("sev-snp", sim.quote), DATA, NOW)
    assert info.value.reason == "chain_invalid"


def test_garbage_evidence_is_malformed() -> None:
    verifier = sim_snp_verifier(trusted=True)
    for quote in (b"", b"\x93\x01\x02", encode_snp_evidence(SnpEvidence(b"x", b"y"))):
        with pytest.raises(EvidenceError) as info:
            verifier.verify(Evidence("sim-snp", quote), DATA, NOW)
        assert info.value.reason in ("malformed",)


def test_tee_kinds() -> None:
    assert [tee_kind(p) for p in ("sim-tdx", "tdx", "sim-snp", "sev-snp", "none", "?")] == [
        "tdx",
        "tdx",
        "sev-snp",
        "sev-snp",
        "none",
        "none",
    ]


def _peer(provider: object, role: str = "worker") -> object:
    key = Ed25519PrivateKey.generate()
    cert = make_attested_certificate(key, claims_for(key, role=role), provider, NOW)  # type: ignore[arg-type]
    return parse_certificate(cert)


def test_a_simulated_node_of_either_kind_trusts_both_kinds() -> None:
    snp_peer, tdx_peer = _peer(SimSnpProvider()), _peer(SimTdxProvider())
    for own in ("sim-snp", "sim-tdx"):
        policy = peer_policy(NETWORK, False, TeeConfig(provider=own))
        for peer, kind in ((snp_peer, "sim-snp"), (tdx_peer, "sim-tdx")):
            verdict = verify_peer(peer, expected_role="worker", policy=policy, now=NOW)  # type: ignore[arg-type]
            assert verdict.trusted and verdict.provider == kind


def test_a_node_that_is_not_simulated_refuses_simulated_peers() -> None:
    policy = peer_policy(NETWORK, False, TeeConfig(provider="none"))
    with pytest.raises(PolicyError) as info:
        verify_peer(_peer(SimSnpProvider()), expected_role="worker", policy=policy, now=NOW)  # type: ignore[arg-type]
    assert info.value.reason == "untrusted_provider"


def test_the_image_pin_of_the_config_applies_to_snp_peers() -> None:
    tee = TeeConfig(provider="sim-snp", image_hashes=["ab" * 32])
    with pytest.raises(PolicyError) as info:
        verify_peer(
            _peer(SimSnpProvider()),  # type: ignore[arg-type]
            expected_role="worker",
            policy=peer_policy(NETWORK, False, tee),
            now=NOW,
        )
    assert info.value.reason == "measurement_not_allowed"
    own = SimSnpProvider().platform
    ok = TeeConfig(provider="sim-snp", image_hashes=[own.image_hash])
    verdict = verify_peer(
        _peer(SimSnpProvider()),  # type: ignore[arg-type]
        expected_role="worker",
        policy=peer_policy(NETWORK, False, ok),
        now=NOW,
    )
    assert verdict.trusted


def test_a_missing_crl_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AttestationError) as info:
        peer_verifiers(TeeConfig(snp_crl_file=str(tmp_path / "absent.crl")))
    assert info.value.reason == "crl_unavailable"


def test_report_data_is_the_hash_of_the_claims() -> None:
    key = Ed25519PrivateKey.generate()
    claims = claims_for(key)
    cert = parse_certificate(make_attested_certificate(key, claims, SimSnpProvider(), NOW))
    report = parse_snp_report(decode_snp_evidence(cert.evidence.quote).report)
    assert report.report_data == report_data(claims)
