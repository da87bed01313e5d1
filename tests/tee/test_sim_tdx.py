"""The simulated Intel PKI: its quotes pass, and fail, the real dcap-qvl verification."""

from __future__ import annotations

import json

import pytest

from cocoon.tee.dcap import verify_quote
from cocoon.tee.errors import AttestationError, EvidenceError
from cocoon.tee.providers import provider_by_name, verifier_by_name
from cocoon.tee.sim_intel_pki import OUT_OF_DATE_ADVISORY, SimulatedIntelPki
from cocoon.tee.sim_tdx import (
    SimTdxPlatform,
    SimTdxProvider,
    local_build_platform,
    sim_tdx_verifier,
)
from cocoon.tee.tdx_policy import TdxPolicy, check_tdx_quote
from cocoon.tee.tdx_quote import parse_tdx_quote

NOW = 1_760_000_000
REPORT_DATA = bytes(range(64))


@pytest.fixture(scope="module")
def pki() -> SimulatedIntelPki:
    return SimulatedIntelPki()


def _check(
    pki: SimulatedIntelPki, quote: bytes, policy: TdxPolicy | None = None, **kw: object
) -> str:
    return check_tdx_quote(
        quote,
        collateral=str(kw.get("collateral", pki.collateral(NOW))),
        now=int(kw.get("now", NOW)),  # type: ignore[call-overload]
        policy=policy or TdxPolicy(),
        expected_report_data=REPORT_DATA,
        root_ca_der=pki.root_ca_der,
    ).status


def test_sim_quote_is_real_format_and_verifies(pki: SimulatedIntelPki) -> None:
    quote = SimTdxProvider(pki).quote(REPORT_DATA)
    parsed = parse_tdx_quote(quote)
    assert parsed.header.version == 4 and parsed.report.report_data == REPORT_DATA
    assert parsed.report.debug is False
    assert _check(pki, quote) == "UpToDate"


def test_same_seed_same_root_other_seed_refused(pki: SimulatedIntelPki) -> None:
    quote = SimTdxProvider(pki).quote(REPORT_DATA)
    # Another node builds its own PKI from the same seed: it verifies.
    other_node = SimulatedIntelPki()
    assert (
        verify_quote(
            quote, other_node.collateral(NOW + 1), NOW + 1, root_ca_der=other_node.root_ca_der
        ).status
        == "UpToDate"
    )
    stranger = SimulatedIntelPki(b"another seed")
    with pytest.raises(EvidenceError):
        verify_quote(quote, stranger.collateral(NOW), NOW, root_ca_der=stranger.root_ca_der)
    # And never against Intel's real root.
    with pytest.raises(EvidenceError):
        verify_quote(quote, pki.collateral(NOW), NOW)


def test_out_of_date_platform_needs_status_and_advisory_opt_in(pki: SimulatedIntelPki) -> None:
    quote = SimTdxProvider(pki, SimTdxPlatform(pce_svn=5)).quote(REPORT_DATA)
    with pytest.raises(AttestationError) as info:
        _check(pki, quote)
    assert info.value.reason == "tcb_not_allowed"
    with pytest.raises(AttestationError) as info:
        _check(pki, quote, TdxPolicy(tcb_statuses=["UpToDate", "OutOfDate"]))
    assert info.value.reason == "advisory_not_allowed"
    assert OUT_OF_DATE_ADVISORY in str(info.value)
    policy = TdxPolicy(
        tcb_statuses=["UpToDate", "OutOfDate"], allowed_advisories=[OUT_OF_DATE_ADVISORY]
    )
    assert _check(pki, quote, policy) == "OutOfDate"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("debug", "debug_td"),
        ("image", "measurement_not_allowed"),
        ("report_data", "report_data_mismatch"),
        ("expired", "collateral_expired"),
        ("flipped", "bad_signature"),
    ],
)
def test_refusals(pki: SimulatedIntelPki, case: str, reason: str) -> None:
    good = local_build_platform()
    policy = TdxPolicy(image_hashes=[good.image_hash])
    platform = {"debug": local_build_platform(debug=True), "image": local_build_platform("evil")}
    quote = SimTdxProvider(pki, platform.get(case, good)).quote(
        bytes(64) if case == "report_data" else REPORT_DATA
    )
    kw: dict[str, object] = {}
    if case == "expired":
        kw["now"] = NOW + 40 * 86400
    if case == "flipped":
        raw = bytearray(quote)
        raw[400] ^= 0x80
        quote = bytes(raw)
    with pytest.raises(AttestationError) as info:
        _check(pki, quote, policy, **kw)
    assert info.value.reason == reason


def test_collateral_is_dcap_qvl_json(pki: SimulatedIntelPki) -> None:
    doc = json.loads(pki.collateral(NOW))
    assert json.loads(doc["tcb_info"])["id"] == "TDX"
    assert pki.collateral(NOW) is pki.collateral(NOW + 60)  # cached per day


def test_registry_verifier_is_untrusted_and_node_verifier_trusted() -> None:
    provider = provider_by_name("sim-tdx")
    evidence = provider.evidence(REPORT_DATA)
    untrusted = verifier_by_name("sim-tdx").verify(evidence, REPORT_DATA, NOW)
    assert untrusted.trusted is False and untrusted.measurements["tcb_status"] == "UpToDate"
    trusted = sim_tdx_verifier(trusted=True).verify(evidence, REPORT_DATA, NOW)
    assert trusted.trusted is True
    assert trusted.measurements["image_hash"] == local_build_platform().image_hash
