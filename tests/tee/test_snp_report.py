"""SEV-SNP reports: every field at its offset (checked on the real Milan vector), and
anything that is not a report is "malformed" and nothing else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.tee.errors import EvidenceError
from cocoon.tee.sim_snp import SimSnpProvider
from cocoon.tee.snp_report import (
    GENOA,
    MILAN,
    REPORT_LEN,
    SIGNED_LEN,
    TURIN,
    compose_tcb,
    is_snp_report,
    parse_snp_report,
    tcb_components,
)

from .vectors import snp_report

MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
    "6bdf8a9ece31a5a608eb0cf2e4872b01"
)
CHIP_ID = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
    "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)


def test_every_field_of_the_real_report() -> None:
    raw = snp_report()
    r = parse_snp_report(raw)
    assert r.version == 2 and r.guest_svn == 0
    assert r.policy == 0xB0000  # SMT (16), reserved one (17), DEBUG (19)
    assert r.debug and r.smt_allowed and not r.migration_agent
    assert r.family_id == bytes(16) and r.image_id == bytes(16)
    assert r.vmpl == 0 and r.signature_algo == 1
    assert r.current_tcb == r.reported_tcb == r.committed_tcb == r.launch_tcb
    assert r.reported_tcb == 0x4405000000000002
    assert tcb_components(r.reported_tcb, MILAN) == {
        "bootloader": 2,
        "tee": 0,
        "snp": 5,
        "microcode": 68,
    }
    assert r.platform_info == 1 and r.smt_enabled
    assert r.signer_info == 0 and r.signing_key == 0 and not r.mask_chip_id
    assert r.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)
    assert r.measurement.hex() == MEASUREMENT
    assert r.host_data == bytes(32)
    assert r.id_key_digest == bytes(48) and r.author_key_digest == bytes(48)
    assert r.report_id.hex().startswith("8edc638e1857c555")
    assert r.report_id_ma == b"\xff" * 32
    assert r.cpuid is None and r.product is None  # version 2 carries no CPUID
    assert r.chip_id.hex() == CHIP_ID
    assert r.current_version == r.committed_version == (1, 0x31, 3)
    assert r.launch_mit_vector is None and r.current_mit_vector is None
    assert r.signed == raw[:SIGNED_LEN]
    assert r.signature_r == int.from_bytes(raw[0x2A0:0x2E8], "little")
    assert r.signature_s == int.from_bytes(raw[0x2E8:0x330], "little")
    assert r.signature_r.bit_length() > 300 and r.signature_s.bit_length() > 300
    # Offsets, read independently of the parser.
    assert raw[0x90:0xC0].hex() == MEASUREMENT and raw[0x1A0:0x1E0].hex() == CHIP_ID
    assert struct.unpack_from("<Q", raw, 0x180)[0] == r.reported_tcb


def test_version_3_carries_cpuid_and_names_the_product() -> None:
    r = parse_snp_report(SimSnpProvider().report(bytes(64)))
    assert r.version == 3 and r.cpuid == (0x19, 0x01, 0x01) and r.product == MILAN


def test_version_5_mitigation_vectors() -> None:
    raw = bytearray(SimSnpProvider().report(bytes(64)))
    raw[0:4] = struct.pack("<I", 5)
    raw[0x1F8:0x208] = struct.pack("<QQ", 3, 7)
    r = parse_snp_report(bytes(raw))
    assert (r.launch_mit_vector, r.current_mit_vector) == (3, 7)
    # In a version 4 report the same bytes are reserved.
    raw[0:4] = struct.pack("<I", 4)
    with pytest.raises(EvidenceError) as info:
        parse_snp_report(bytes(raw))
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("product", [MILAN, GENOA, TURIN])
def test_tcb_layouts_round_trip(product: str) -> None:
    levels = {"bootloader": 9, "tee": 1, "snp": 24, "microcode": 219}
    if product == TURIN:
        levels["fmc"] = 2
    assert tcb_components(compose_tcb(levels, product), product) == levels


def test_turin_packs_fmc_first() -> None:
    tcb = compose_tcb({"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}, TURIN)
    assert tcb.to_bytes(8, "little") == bytes([1, 2, 3, 4, 0, 0, 0, 5])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r[:-1],
        lambda r: r + b"\x00",
        lambda r: r[:SIGNED_LEN],
        lambda r: b"",
        lambda r: struct.pack("<I", 1) + r[4:],  # version 1
        lambda r: struct.pack("<I", 6) + r[4:],  # a future version
        lambda r: r[:0x34] + struct.pack("<I", 2) + r[0x38:],  # unknown signature algorithm
        lambda r: r[:0x0A] + b"\x09" + r[0x0B:],  # policy without its reserved bit 17
        lambda r: r[:0x4C] + b"\x01" + r[0x4D:],  # reserved word
        lambda r: r[:0x200] + b"\x01" + r[0x201:],  # reserved area of a v2 report
        lambda r: r[:0x400] + b"\x01" + r[0x401:],  # after the signature's R and S
        lambda r: r[:0x48] + b"\x20" + r[0x49:],  # reserved signer info bits
    ],
    ids=[
        "truncated",
        "extended",
        "unsigned",
        "empty",
        "v1",
        "v6",
        "sig-algo",
        "policy-bit-17",
        "reserved-4c",
        "reserved-200",
        "signature-padding",
        "signer-info",
    ],
)
def test_not_a_report_is_malformed(mutate: object) -> None:
    assert callable(mutate)
    with pytest.raises(EvidenceError) as info:
        parse_snp_report(mutate(snp_report()))
    assert info.value.reason == "malformed"


def test_kind_detection() -> None:
    assert is_snp_report(snp_report())
    assert not is_snp_report(snp_report()[:-1]) and not is_snp_report(b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2 * REPORT_LEN))
def test_random_bytes_raise_only_evidence_errors(data: bytes) -> None:
    try:
        parse_snp_report(data)
    except EvidenceError as exc:
        assert exc.reason == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, REPORT_LEN - 1), st.integers(1, 255))
def test_one_byte_changed_parses_or_is_malformed(offset: int, xor: int) -> None:
    raw = bytearray(snp_report())
    raw[offset] ^= xor
    try:
        parse_snp_report(bytes(raw))
    except EvidenceError as exc:
        assert exc.reason == "malformed"
