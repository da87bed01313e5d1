"""The ``sev-snp`` provider: real SEV-SNP reports from Linux configfs-tsm in an SNP guest.

The kernel interface is the one of :mod:`cocoon.tee.tdx_provider` (a report
entry under ``/sys/kernel/config/tsm/report/``; ``inblob``, ``outblob``,
``generation``), served by ``sev_guest``: ``outblob`` is the raw attestation
report (0x4A0 bytes) and ``auxblob``, when the host supplies certificates
(the extended guest request), is the certificate table of the GHCB
specification: entries of (GUID [16], offset u32, length u32), offsets from
the start of the table, ended by an all-zero entry; the VCEK, ASK and ARK are
named by their GUIDs.

Where the host supplies no certificates, the VCEK (and optionally the chain)
comes from ``certs_dir``: ``vcek.der`` as AMD's key distribution service
serves it for this chip and TCB, and ``ask_ark.pem``. Without either,
AttestationError "snp_vcek_unavailable". After a firmware update the VCEK
in ``certs_dir`` must be fetched again (AMD derives one per TCB): peers then
refuse the old one as "chain_invalid", naming both TCBs.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from cocoon.tee.certs import write_pem
from cocoon.tee.errors import AttestationError, CertificateError, EvidenceError
from cocoon.tee.evidence import Evidence
from cocoon.tee.snp_policy import SnpEvidence, encode_snp_evidence
from cocoon.tee.snp_report import SIGNING_KEY_VCEK, parse_snp_report
from cocoon.tee.tdx_provider import DEFAULT_TSM_PATH, ConfigfsTsmProvider

SNP_PROVIDER = "sev-snp"
TSM_SNP_PROVIDER = "sev_guest"
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
_ENTRY = struct.Struct("<16sII")


def parse_cert_table(table: bytes) -> dict[uuid.UUID, bytes]:
    """GUID → certificate (DER) from an auxblob; raise EvidenceError("malformed")."""
    out: dict[uuid.UUID, bytes] = {}
    pos = 0
    while True:
        if pos + _ENTRY.size > len(table):
            raise EvidenceError("malformed", "certificate table without its all-zero end entry")
        raw, offset, length = _ENTRY.unpack_from(table, pos)
        pos += _ENTRY.size
        if not any(raw) and offset == 0 and length == 0:
            return out
        if offset + length > len(table) or offset < pos:
            raise EvidenceError("malformed", f"certificate table entry points outside ({offset})")
        data = table[offset : offset + length]
        # Hosts write the GUIDs in RFC 4122 byte order, some in the little-endian
        # (EFI) form: the entry is filed under both readings.
        out[uuid.UUID(bytes=raw)] = data
        out[uuid.UUID(bytes_le=raw)] = data


class SnpTsmProvider(ConfigfsTsmProvider):
    """AttestationProvider "sev-snp": one configfs-tsm report entry per report."""

    name: str = SNP_PROVIDER
    tsm_provider: str = TSM_SNP_PROVIDER
    guest_kind: str = "SEV-SNP"

    def __init__(self, root: Path | str = DEFAULT_TSM_PATH, certs_dir: Path | str = "") -> None:
        super().__init__(root)
        self.certs_dir = Path(certs_dir) if certs_dir else None

    def check_quote(self, quote: bytes, report_data: bytes) -> None:
        report = parse_snp_report(quote)  # EvidenceError("malformed")
        if report.report_data != report_data:
            raise EvidenceError(
                "report_data_mismatch", "the report from configfs-tsm does not bind our claims"
            )
        if report.signing_key != SIGNING_KEY_VCEK:
            raise AttestationError(
                "snp_not_vcek",
                f"the report is signed by key kind {report.signing_key}, not the chip's VCEK"
                " (VLEK-signed reports are not supported yet)",
            )

    def _files(self) -> tuple[bytes, bytes]:
        if self.certs_dir is None:
            return b"", b""
        try:
            vcek = (self.certs_dir / "vcek.der").read_bytes()
        except FileNotFoundError:
            return b"", b""
        except OSError as exc:
            raise AttestationError("snp_vcek_unavailable", f"cannot read the VCEK: {exc}") from None
        chain_file = self.certs_dir / "ask_ark.pem"
        chain = chain_file.read_bytes() if chain_file.is_file() else b""
        return vcek, chain

    def evidence(self, report_data: bytes) -> Evidence:
        report, aux = self.request(report_data)
        table = parse_cert_table(aux) if aux else {}
        vcek = table.get(VCEK_GUID, b"")
        chain = b""
        if vcek and ASK_GUID in table:
            try:
                chain = write_pem(table[ASK_GUID])
                chain += write_pem(table[ARK_GUID]) if ARK_GUID in table else b""
            except CertificateError as exc:
                # The host's table is part of the evidence: its fault is malformed evidence.
                raise EvidenceError("malformed", f"the host's ASK/ARK: {exc}") from None
        if not vcek:
            vcek, chain = self._files()
        if not vcek:
            raise AttestationError(
                "snp_vcek_unavailable",
                "the host supplies no certificates and no vcek.der is configured"
                " (tee.snp_certs_dir; fetch it once from AMD's key distribution service)",
            )
        bundle = SnpEvidence(report=report, vcek=vcek, chain=chain)
        return Evidence(provider=SNP_PROVIDER, quote=encode_snp_evidence(bundle))
