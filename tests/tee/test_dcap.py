"""DCAP verification of the real sample quote with dcap-qvl, offline, at given times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoon.tee.dcap import CollateralCache, verify_quote
from cocoon.tee.errors import EvidenceError
from cocoon.tee.tdx_quote import HEADER_LEN, TD_REPORT10_LEN

from .vectors import AFTER_EXPIRY, ISSUE_TIME, sample_collateral, sample_quote


def test_sample_quote_is_up_to_date_at_issue_time() -> None:
    result = verify_quote(sample_quote(), sample_collateral(), ISSUE_TIME)
    assert result.status == "UpToDate"
    assert result.advisory_ids == []
    assert result.quote.report.debug is False


def test_sample_quote_fails_after_collateral_expiry() -> None:
    with pytest.raises(EvidenceError) as info:
        verify_quote(sample_quote(), sample_collateral(), AFTER_EXPIRY)
    assert info.value.reason == "collateral_expired"
    assert "CrlExpired" in str(info.value)


def test_sample_quote_fails_before_collateral_issue() -> None:
    with pytest.raises(EvidenceError) as info:
        verify_quote(sample_quote(), sample_collateral(), ISSUE_TIME - 400 * 86400)
    assert info.value.reason == "collateral_not_yet_valid"


# Positions across the signed region (header, every TD report field group,
# REPORTDATA) and the signature data (signature, attestation key, QE report).
_SIGNED_END = HEADER_LEN + TD_REPORT10_LEN
_POSITIONS = [0, 9, 20, 47, 48, 70, 200, 300, 400, 520, 570, 600, _SIGNED_END - 1]
_POSITIONS += [_SIGNED_END + 4, _SIGNED_END + 4 + 63, _SIGNED_END + 4 + 64, _SIGNED_END + 200]


@pytest.mark.parametrize("position", _POSITIONS)
def test_any_flipped_signed_byte_fails(position: int) -> None:
    raw = bytearray(sample_quote())
    raw[position] ^= 0x01
    with pytest.raises(EvidenceError) as info:
        verify_quote(bytes(raw), sample_collateral(), ISSUE_TIME)
    # Header fields such as the version or TEE type make it malformed; the
    # rest must be caught by a signature check.
    assert info.value.reason in {"bad_signature", "malformed", "verification_failed"}, info.value


def test_report_byte_flip_is_a_bad_signature() -> None:
    raw = bytearray(sample_quote())
    raw[200] ^= 0x01
    with pytest.raises(EvidenceError) as info:
        verify_quote(bytes(raw), sample_collateral(), ISSUE_TIME)
    assert info.value.reason == "bad_signature"


def test_tampered_collateral_fails() -> None:
    doc = json.loads(sample_collateral())
    doc["tcb_info"] = doc["tcb_info"].replace(
        '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18'
    )
    with pytest.raises(EvidenceError) as info:
        verify_quote(sample_quote(), json.dumps(doc), ISSUE_TIME)
    assert info.value.reason in {"bad_signature", "verification_failed"}


def test_garbage_collateral_is_collateral_invalid() -> None:
    with pytest.raises(EvidenceError) as info:
        verify_quote(sample_quote(), "{not json", ISSUE_TIME)
    assert info.value.reason == "collateral_invalid"


def test_collateral_cache_offline_and_fetch_hook(tmp_path: Path) -> None:
    calls: list[bytes] = []

    def fetch(raw: bytes) -> str:
        calls.append(raw)
        return sample_collateral()

    quote = sample_quote()
    offline = CollateralCache(tmp_path)
    with pytest.raises(EvidenceError) as info:
        offline.get(quote, ISSUE_TIME)
    assert info.value.reason == "collateral_unavailable"

    online = CollateralCache(tmp_path, fetch=fetch)
    assert online.get(quote, ISSUE_TIME) == sample_collateral()
    assert len(calls) == 1
    assert online.path_for(quote).name == "collateral-B0C06F000000-platform.json"
    # Now cached: the offline cache serves it, and the hook is not called again.
    assert offline.get(quote, ISSUE_TIME) == sample_collateral()
    assert online.get(quote, ISSUE_TIME) == sample_collateral()
    assert len(calls) == 1
    # Past nextUpdate the hook is asked again; offline, the stale copy is kept.
    assert offline.get(quote, AFTER_EXPIRY) == sample_collateral()
    online.get(quote, AFTER_EXPIRY)
    assert len(calls) == 2
    assert verify_quote(quote, offline.get(quote, ISSUE_TIME), ISSUE_TIME).status == "UpToDate"
