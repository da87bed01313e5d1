"""The ``sev-snp`` provider against a directory that plays the kernel's configfs-tsm
part (``sev_guest``), with the host's certificate table in ``auxblob`` or the VCEK in a
directory of the operator's."""

from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cocoon.config import TeeConfig
from cocoon.node import provider_for
from cocoon.tee.errors import AttestationError, EvidenceError
from cocoon.tee.sim_snp import SimSnpProvider, sim_snp_verifier
from cocoon.tee.snp_policy import decode_snp_evidence
from cocoon.tee.snp_provider import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    SnpTsmProvider,
    parse_cert_table,
)

NOW = 1_760_000_000
DATA = bytes(range(64))


def cert_table(entries: list[tuple[uuid.UUID, bytes]], *, little_endian: bool = False) -> bytes:
    header = 24 * (len(entries) + 1)
    table, blobs = b"", b""
    for guid, blob in entries:
        raw = guid.bytes_le if little_endian else guid.bytes
        table += struct.pack("<16sII", raw, header + len(blobs), len(blob))
        blobs += blob
    return table + bytes(24) + blobs


class FakeSevGuest(SnpTsmProvider):
    """configfs-tsm served by sev_guest: outblob a (simulated) report over inblob."""

    def __init__(self, root: Path, *, aux: bytes = b"", certs_dir: Path | str = "") -> None:
        super().__init__(root, certs_dir)
        self.sim = SimSnpProvider()
        self.aux = aux

    def open_entry(self) -> Path:
        entry = super().open_entry()
        (entry / "provider").write_text("sev_guest\n")
        (entry / "generation").write_text("0\n")
        return entry

    def write_report_data(self, entry: Path, report_data: bytes) -> None:
        super().write_report_data(entry, report_data)
        (entry / "generation").write_text("1\n")
        (entry / "outblob").write_bytes(self.sim.report((entry / "inblob").read_bytes()))
        if self.aux:
            (entry / "auxblob").write_bytes(self.aux)

    def remove_entry(self, entry: Path) -> None:
        shutil.rmtree(entry)


def _der(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]


def _check(provider: FakeSevGuest) -> bytes:
    evidence = provider.evidence(DATA)
    assert evidence.provider == "sev-snp"
    # Verified with the sim's roots: the fake kernel's reports are simulated.
    verifier = sim_snp_verifier(trusted=True)
    verifier.provider = "sev-snp"
    assert verifier.verify(evidence, DATA, NOW).trusted
    return decode_snp_evidence(evidence.quote).chain


@pytest.mark.parametrize("little_endian", [False, True])
def test_certificates_from_the_hosts_table(tmp_path: Path, little_endian: bool) -> None:
    sim = SimSnpProvider()
    aux = cert_table(
        [(VCEK_GUID, sim.vcek), (ASK_GUID, _der(sim.pki.ask)), (ARK_GUID, _der(sim.pki.ark))],
        little_endian=little_endian,
    )
    chain = _check(FakeSevGuest(tmp_path, aux=aux))
    assert chain.count(b"BEGIN CERTIFICATE") == 2
    assert list(tmp_path.iterdir()) == []


def test_certificates_from_the_operators_directory(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "vcek.der").write_bytes(SimSnpProvider().vcek)
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    assert _check(FakeSevGuest(tsm, certs_dir=certs)) == b""


def test_no_vcek_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AttestationError) as info:
        FakeSevGuest(tmp_path).evidence(DATA)
    assert info.value.reason == "snp_vcek_unavailable"


def test_a_tdx_guest_is_refused(tmp_path: Path) -> None:
    class TdxKernel(FakeSevGuest):
        def open_entry(self) -> Path:
            entry = super().open_entry()
            (entry / "provider").write_text("tdx_guest\n")
            return entry

    with pytest.raises(AttestationError) as info:
        TdxKernel(tmp_path).evidence(DATA)
    assert info.value.reason == "tsm_wrong_provider"


def test_no_configfs_says_so(tmp_path: Path) -> None:
    with pytest.raises(AttestationError) as info:
        SnpTsmProvider(tmp_path / "absent").evidence(DATA)
    assert info.value.reason == "tsm_unavailable" and "SEV-SNP guest" in str(info.value)


@pytest.mark.parametrize(
    "table",
    [b"", b"\x01" * 24, struct.pack("<16sII", b"\x01" * 16, 48, 5000) + bytes(24)],
    ids=["empty", "no-end", "outside"],
)
def test_a_bad_certificate_table_is_malformed(table: bytes) -> None:
    with pytest.raises(EvidenceError) as info:
        parse_cert_table(table)
    assert info.value.reason == "malformed"


def test_the_config_builds_the_provider(tmp_path: Path) -> None:
    provider = provider_for(
        TeeConfig(provider="sev-snp", tsm_path=str(tmp_path), snp_certs_dir="/x")
    )
    assert isinstance(provider, SnpTsmProvider) and provider.root == tmp_path
    assert provider_for(TeeConfig(provider="sim-snp")).name == "sim-snp"
