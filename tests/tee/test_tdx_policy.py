"""TDX policy on the real sample quote, and the verifier inside verify_peer."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.tee import Evidence, PeerPolicy, make_certificate, parse_certificate, verify_peer
from cocoon.tee.errors import AttestationError, EvidenceError, PolicyError
from cocoon.tee.tdx_policy import TdxPolicy, TdxVerifier, check_tdx_quote
from cocoon.tee.tdx_quote import parse_tdx_quote

from .conftest import NETWORK, claims_for
from .vectors import ISSUE_TIME, sample_collateral, sample_quote

SAMPLE_IMAGE = "8ef444fda246f7e0d5f9a3ba0a2822ae0be7dbec5e321277d03b73b198fa2545"


def _check(policy: TdxPolicy, report_data: bytes | None = None) -> str:
    quote = sample_quote()
    if report_data is None:
        report_data = parse_tdx_quote(quote).report.report_data
    return check_tdx_quote(
        quote,
        collateral=sample_collateral(),
        now=ISSUE_TIME,
        policy=policy,
        expected_report_data=report_data,
    ).status


def test_default_policy_accepts_the_up_to_date_sample() -> None:
    assert parse_tdx_quote(sample_quote()).report.image_hash == SAMPLE_IMAGE
    assert _check(TdxPolicy()) == "UpToDate"
    assert _check(TdxPolicy(image_hashes=[SAMPLE_IMAGE])) == "UpToDate"


@pytest.mark.parametrize(
    ("policy", "report_data", "reason"),
    [
        (TdxPolicy(image_hashes=["00" * 32]), None, "measurement_not_allowed"),
        (TdxPolicy(image_hashes=[]), None, "measurement_not_allowed"),
        (TdxPolicy(tcb_statuses=["OutOfDate"]), None, "tcb_not_allowed"),
        (TdxPolicy(), b"\x00" * 64, "report_data_mismatch"),
    ],
)
def test_policy_refusals(policy: TdxPolicy, report_data: bytes | None, reason: str) -> None:
    with pytest.raises(AttestationError) as info:
        _check(policy, report_data)
    assert info.value.reason == reason


def test_debug_td_is_refused_before_signature_is_trusted() -> None:
    # Flipping the debug bit breaks the signature: a forged debug flag can
    # never pass. (Signed debug quotes are tested with sim-tdx.)
    raw = bytearray(sample_quote())
    raw[48 + 16 + 48 + 48 + 8] |= 1
    with pytest.raises(EvidenceError) as info:
        check_tdx_quote(
            bytes(raw),
            collateral=sample_collateral(),
            now=ISSUE_TIME,
            policy=TdxPolicy(),
            expected_report_data=None,
        )
    assert info.value.reason == "bad_signature"


def test_verifier_plugs_into_verify_peer() -> None:
    key = Ed25519PrivateKey.generate()
    claims = claims_for(key, issued_at=ISSUE_TIME)
    evidence = Evidence(provider="tdx", quote=sample_quote())
    cert = parse_certificate(make_certificate(key, claims, evidence, ISSUE_TIME))
    verifier = TdxVerifier(collateral=lambda raw, now: sample_collateral())
    # The sample quote binds someone else's claims: refused as such.
    with pytest.raises(EvidenceError) as info:
        verify_peer(
            cert,
            expected_role="worker",
            policy=PeerPolicy(network=NETWORK),
            now=ISSUE_TIME,
            verifiers={"tdx": verifier},
        )
    assert info.value.reason == "report_data_mismatch"
    # Without a configured verifier, the default tdx verifier (Intel's root)
    # has no collateral: refused with that precise reason.
    with pytest.raises(EvidenceError) as info2:
        verify_peer(
            cert, expected_role="worker", policy=PeerPolicy(network=NETWORK), now=ISSUE_TIME
        )
    assert info2.value.reason == "collateral_unavailable"


def test_stale_evidence_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    claims = claims_for(key, issued_at=ISSUE_TIME)
    cert = parse_certificate(
        make_certificate(key, claims, Evidence(provider="none", quote=b""), ISSUE_TIME)
    )
    policy = PeerPolicy(network=NETWORK, allow_untrusted=True, max_evidence_age_s=3600)
    with pytest.raises(PolicyError) as info:
        verify_peer(cert, expected_role="worker", policy=policy, now=ISSUE_TIME + 7200)
    assert info.value.reason == "stale_evidence"
