from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.tee import (
    AttestationError,
    CertificateError,
    Evidence,
    EvidenceError,
    NoneProvider,
    NoneVerifier,
    PeerCertificate,
    PeerPolicy,
    PolicyError,
    Verdict,
    make_certificate,
    parse_certificate,
    provider_by_name,
    report_data,
    verifier_by_name,
    verify_peer,
)

from .conftest import NETWORK, NOW, claims_for

Issue = Callable[..., bytes]

DEV = PeerPolicy(network=NETWORK, allow_untrusted=True)
STRICT = PeerPolicy(network=NETWORK)


def peer(der: bytes) -> PeerCertificate:
    return parse_certificate(der)


def test_none_evidence_accepted_as_untrusted_when_allowed(issue: Issue) -> None:
    verdict = verify_peer(peer(issue()), expected_role="worker", policy=DEV, now=NOW)
    assert verdict == Verdict(
        trusted=False, provider="none", reason="no hardware attestation (provider none)"
    )
    assert verdict.measurements == {}


def test_none_evidence_refused_by_default(issue: Issue) -> None:
    with pytest.raises(PolicyError) as info:
        verify_peer(peer(issue()), expected_role="worker", policy=STRICT, now=NOW)
    assert info.value.reason == "untrusted_provider"


def test_any_role_when_none_expected(issue: Issue) -> None:
    verify_peer(peer(issue(role="client")), expected_role=None, policy=DEV, now=NOW)


def test_wrong_role(issue: Issue) -> None:
    with pytest.raises(PolicyError) as info:
        verify_peer(peer(issue(role="client")), expected_role="proxy", policy=DEV, now=NOW)
    assert info.value.reason == "role_mismatch"


def test_wrong_network(issue: Issue) -> None:
    with pytest.raises(PolicyError) as info:
        verify_peer(peer(issue(network="mainnet")), expected_role=None, policy=DEV, now=NOW)
    assert info.value.reason == "network_mismatch"


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-60 - 300 - 1, "not_yet_valid"),  # before not_before, beyond the skew
        (3600 + 300 + 1, "expired"),  # after not_after, beyond the skew
    ],
)
def test_validity_window(issue: Issue, offset: int, reason: str) -> None:
    cert = peer(issue(validity_s=3600))
    with pytest.raises(CertificateError) as info:
        verify_peer(cert, expected_role=None, policy=DEV, now=NOW + offset)
    assert info.value.reason == reason


@pytest.mark.parametrize("offset", [-60 - 300, 0, 3600 + 300])
def test_validity_edges_within_skew(issue: Issue, offset: int) -> None:
    cert = peer(issue(validity_s=3600, issued_at=NOW - 60))
    verify_peer(cert, expected_role=None, policy=DEV, now=NOW + offset)


def test_issued_in_future(issue: Issue) -> None:
    cert = peer(issue(issued_at=NOW + 301))
    with pytest.raises(PolicyError) as info:
        verify_peer(cert, expected_role=None, policy=DEV, now=NOW)
    assert info.value.reason == "issued_in_future"


def test_none_evidence_for_other_claims(key: Ed25519PrivateKey) -> None:
    claims = claims_for(key)
    lifted = Evidence("none", report_data(claims_for(key, version="other")))
    cert = peer(make_certificate(key, claims, lifted, NOW))
    with pytest.raises(EvidenceError) as info:
        verify_peer(cert, expected_role=None, policy=DEV, now=NOW)
    assert info.value.reason == "report_data_mismatch"


def test_unknown_provider_in_peer_certificate(key: Ed25519PrivateKey) -> None:
    claims = claims_for(key)
    cert = peer(make_certificate(key, claims, Evidence("sgx-9000", report_data(claims)), NOW))
    with pytest.raises(PolicyError) as info:
        verify_peer(cert, expected_role=None, policy=DEV, now=NOW)
    assert info.value.reason == "unknown_provider"


def test_unknown_provider_by_name() -> None:
    with pytest.raises(AttestationError, match="known: none") as info:
        provider_by_name("sgx-9000")
    assert info.value.reason == "unknown_provider"
    with pytest.raises(PolicyError):
        verifier_by_name("sgx-9000")


def test_configured_verifier_overrides_default(issue: Issue) -> None:
    # How a sim-tdx/tdx verifier with its own settings will be plugged in.
    class Trusting:
        def verify(self, evidence: Evidence, expected_report_data: bytes, now: int) -> Verdict:
            NoneVerifier().verify(evidence, expected_report_data, now)
            return Verdict(trusted=True, provider="none", reason="ok", measurements={"m": "00"})

    verdict = verify_peer(
        peer(issue()), expected_role=None, policy=STRICT, now=NOW, verifiers={"none": Trusting()}
    )
    assert verdict.trusted and verdict.measurements == {"m": "00"}


def test_none_provider() -> None:
    rd = bytes(range(64))
    provider = provider_by_name("none")
    assert provider.name == "none"
    assert isinstance(provider, NoneProvider)
    assert provider.evidence(rd) == Evidence(provider="none", quote=rd)
    with pytest.raises(EvidenceError) as info:
        provider.evidence(rd[:32])
    assert info.value.reason == "malformed"


def test_none_verifier_refuses_other_provider() -> None:
    rd = bytes(range(64))
    with pytest.raises(EvidenceError) as info:
        NoneVerifier().verify(Evidence("tdx", rd), rd, NOW)
    assert info.value.reason == "provider_mismatch"


def test_error_carries_reason_and_message() -> None:
    err = PolicyError("role_mismatch", "peer claims role 'client', expected 'proxy'")
    assert isinstance(err, AttestationError)
    assert err.reason == "role_mismatch"
    assert str(err) == "peer claims role 'client', expected 'proxy'"


def test_policy_is_a_frozen_struct() -> None:
    assert msgspec.json.decode(b'{"network": "n"}', type=PeerPolicy) == PeerPolicy(network="n")
