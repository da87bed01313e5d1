"""TDX quote parsing: the real sample, cross-checked with dcap-qvl, and malformed input."""

from __future__ import annotations

import struct

import dcap_qvl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.tee.errors import EvidenceError
from cocoon.tee.tdx_quote import (
    BODY_TD_REPORT10,
    BODY_TD_REPORT15,
    HEADER_LEN,
    TD_REPORT10_LEN,
    image_hash,
    parse_tdx_quote,
)

from .vectors import sample_quote


def test_sample_quote_matches_dcap_qvl() -> None:
    raw = sample_quote()
    ours = parse_tdx_quote(raw)
    theirs = dcap_qvl.parse_quote(raw)
    h, th = ours.header, theirs.header
    assert (h.version, h.attestation_key_type, h.tee_type) == (4, 2, 0x81)
    assert (h.version, h.attestation_key_type, h.tee_type, h.qe_svn, h.pce_svn) == (
        th.version,
        th.attestation_key_type,
        th.tee_type,
        th.qe_svn,
        th.pce_svn,
    )
    assert h.qe_vendor_id == th.qe_vendor_id and h.user_data == th.user_data
    r, tr = ours.report, theirs.report
    assert isinstance(tr, dcap_qvl.TdReport10)
    assert r.mr_td == tr.mr_td
    assert r.rtmrs == (tr.rt_mr0, tr.rt_mr1, tr.rt_mr2, tr.rt_mr3)
    assert r.report_data == tr.report_data
    assert r.td_attributes == tr.td_attributes
    assert r.tee_tcb_svn == tr.tee_tcb_svn
    assert r.mr_seam == tr.mr_seam
    assert r.xfam == tr.xfam and r.mr_config_id == tr.mr_config_id
    assert r.debug is False
    assert ours.pck_chain_pem == theirs.cert_chain_pem_bytes()
    assert len(ours.signed) == HEADER_LEN + TD_REPORT10_LEN
    assert ours.report.image_hash == image_hash(r.mr_td, r.rtmrs)


def _as_v5(raw: bytes, body_type: int) -> bytes:
    """The v4 sample re-framed as v5 (signature no longer valid; parsing only)."""
    header = struct.pack("<H", 5) + raw[2:HEADER_LEN]
    body = raw[HEADER_LEN : HEADER_LEN + TD_REPORT10_LEN]
    if body_type == BODY_TD_REPORT15:
        body += b"\x11" * 16 + b"\x22" * 48
    rest = raw[HEADER_LEN + TD_REPORT10_LEN :]
    return header + struct.pack("<HI", body_type, len(body)) + body + rest


@pytest.mark.parametrize("body_type", [BODY_TD_REPORT10, BODY_TD_REPORT15])
def test_v5_quotes_parse_like_dcap_qvl(body_type: int) -> None:
    raw = _as_v5(sample_quote(), body_type)
    ours = parse_tdx_quote(raw)
    theirs = dcap_qvl.parse_quote(raw)
    assert ours.header.version == theirs.header.version == 5
    assert ours.body_type == body_type
    assert ours.report.mr_td == theirs.report.mr_td
    assert ours.report.report_data == theirs.report.report_data
    if body_type == BODY_TD_REPORT15:
        assert isinstance(theirs.report, dcap_qvl.TdReport15)
        assert ours.report.tee_tcb_svn2 == theirs.report.tee_tcb_svn2 == b"\x11" * 16
        assert ours.report.mr_service_td == theirs.report.mr_service_td
    body_len = TD_REPORT10_LEN + (64 if body_type == BODY_TD_REPORT15 else 0)
    assert ours.signed == raw[: HEADER_LEN + 6 + body_len]


def test_debug_bit() -> None:
    raw = bytearray(sample_quote())
    td_attributes_offset = HEADER_LEN + 16 + 48 + 48 + 8
    raw[td_attributes_offset] |= 1
    assert parse_tdx_quote(bytes(raw)).report.debug is True


@pytest.mark.parametrize(
    ("mutate", "what"),
    [
        (lambda q: b"", "empty"),
        (lambda q: q[:40], "truncated header"),
        (lambda q: q[:600], "truncated body"),
        (lambda q: q[:700], "truncated signature data"),
        (lambda q: struct.pack("<H", 3) + q[2:], "version 3"),
        (lambda q: q[:4] + struct.pack("<I", 0) + q[8:], "SGX tee type"),
        (lambda q: q[:2] + struct.pack("<H", 3) + q[4:], "P-384 key type"),
        (lambda q: q[:632] + struct.pack("<I", 0xFFFFFFFF) + q[636:], "huge signature size"),
    ],
)
def test_malformed_quotes_are_refused(mutate: object, what: str) -> None:
    raw = sample_quote()
    with pytest.raises(EvidenceError) as info:
        parse_tdx_quote(mutate(raw))  # type: ignore[operator]
    assert info.value.reason == "malformed", what


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    try:
        parse_tdx_quote(data)
    except EvidenceError as exc:
        assert exc.reason == "malformed"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_sample_never_raises_anything_but_malformed(data: st.DataObject) -> None:
    raw = bytearray(sample_quote())
    cut = data.draw(st.integers(0, len(raw)))
    for _ in range(data.draw(st.integers(0, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        parse_tdx_quote(bytes(raw[:cut]))
    except EvidenceError as exc:
        assert exc.reason == "malformed"
