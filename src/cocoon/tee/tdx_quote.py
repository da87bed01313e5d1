"""Intel TDX quotes (versions 4 and 5): parse the bytes, nothing more.

Sans-IO and pure: no signature is checked here (that is
:mod:`cocoon.tee.dcap`), but every length is, so that anything that is not a
well-formed TDX quote raises :class:`~cocoon.tee.errors.EvidenceError` with
reason ``"malformed"`` and nothing else.

Layout (Intel TDX DCAP Quote Generation Library and Quote Verification
Library API, "Quote Format"; all integers little-endian)::

    header (48)      version u16, attestation key type u16, TEE type u32,
                     QE SVN u16, PCE SVN u16, QE vendor id [16], user data [20]
    v5 only (6)      body type u16 (2 = TD report 1.0, 3 = TD report 1.5),
                     body size u32
    body             TD report: 584 bytes (1.0) or 648 bytes (1.5)
    signature size   u32, then the signature data (ECDSA-P256):
                     signature [64] over header‖(v5 body descriptor)‖body,
                     attestation public key [64] (raw x‖y),
                     certification data: type u16, size u32, data;
                     type 6 (QE report certification data) nests:
                     QE report [384], QE report signature [64],
                     QE auth data (size u16, data), certification data
                     (type u16, size u32, data; type 5 = PCK chain, PEM).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cocoon.tee.errors import EvidenceError

TEE_TYPE_TDX = 0x81
ATTESTATION_KEY_ECDSA_P256 = 2
HEADER_LEN = 48
BODY_DESCRIPTOR_LEN = 6
TD_REPORT10_LEN = 584
TD_REPORT15_LEN = 648
BODY_TD_REPORT10 = 2
BODY_TD_REPORT15 = 3
QE_REPORT_LEN = 384
ECDSA_SIGNATURE_LEN = 64
ECDSA_PUBLIC_KEY_LEN = 64
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
MEASUREMENT_LEN = 48
TD_ATTRIBUTES_DEBUG = 0x01  # bit 0 of TDATTRIBUTES (TUD.DEBUG), TDX module spec A.3.4
_MAX_DATA_LEN = 1 << 20  # no real certification data comes near 1 MiB


@dataclass(frozen=True)
class QuoteHeader:
    """The fixed 48-byte quote header."""

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class TdReport:
    """The TD report of a quote (TDREPORT 1.0, plus the 1.5 fields when present)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    """8 bytes, little-endian; bit 0 is DEBUG."""
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    """TD report 1.5 only."""
    mr_service_td: bytes | None = None
    """TD report 1.5 only."""

    @property
    def debug(self) -> bool:
        """Whether the TD runs in debug mode (its memory readable by the host)."""
        return bool(self.td_attributes[0] & TD_ATTRIBUTES_DEBUG)

    @property
    def image_hash(self) -> str:
        """SHA-256 (hex) over MRTD‖RTMR0‖RTMR1‖RTMR2‖RTMR3: the image identity policies pin."""
        return image_hash(self.mr_td, self.rtmrs)

    def measurements(self) -> dict[str, str]:
        """The measurements as hex strings, for verdicts and status outputs."""
        out = {
            "mr_td": self.mr_td.hex(),
            "rtmr0": self.rtmrs[0].hex(),
            "rtmr1": self.rtmrs[1].hex(),
            "rtmr2": self.rtmrs[2].hex(),
            "rtmr3": self.rtmrs[3].hex(),
            "mr_seam": self.mr_seam.hex(),
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
            "td_attributes": self.td_attributes.hex(),
            "image_hash": self.image_hash,
        }
        return out


@dataclass(frozen=True)
class CertificationData:
    """A typed blob of certification data (type 5: PEM PCK chain, type 6: QE report data)."""

    cert_type: int
    data: bytes


@dataclass(frozen=True)
class QeReportCertificationData:
    """Certification data type 6: the QE's report, its signature and the PCK chain."""

    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData


@dataclass(frozen=True)
class TdxQuote:
    """A parsed TDX quote; ``signed`` is the exact byte range the attestation key signs."""

    header: QuoteHeader
    body_type: int
    report: TdReport
    signed: bytes
    signature: bytes
    attestation_key: bytes
    certification: CertificationData
    qe: QeReportCertificationData | None

    @property
    def pck_chain_pem(self) -> bytes | None:
        """The PEM PCK certificate chain carried in the quote, if any."""
        cert = self.qe.certification if self.qe is not None else self.certification
        if cert.cert_type != CERT_DATA_PCK_CHAIN:
            return None
        # The quoting library writes a C string: drop its terminating NUL(s).
        return cert.data.rstrip(b"\x00")


def image_hash(mr_td: bytes, rtmrs: tuple[bytes, bytes, bytes, bytes]) -> str:
    """SHA-256 (hex) over MRTD‖RTMR0..3 — one string per measured image and boot chain."""
    h = hashlib.sha256(mr_td)
    for rtmr in rtmrs:
        h.update(rtmr)
    return h.hexdigest()


class _Reader:
    """Bounds-checked cursor; every short read is a malformed quote."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EvidenceError(
                "malformed", f"quote truncated in {what} (need {n} bytes at offset {self.pos})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, what: str) -> int:
        value: int = struct.unpack("<H", self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value

    def sized(self, size: int, what: str) -> bytes:
        if size > _MAX_DATA_LEN:
            raise EvidenceError("malformed", f"{what} claims {size} bytes")
        return self.take(size, what)

    def done(self, what: str) -> None:
        if self.pos != len(self.data):
            raise EvidenceError(
                "malformed", f"{len(self.data) - self.pos} trailing bytes after {what}"
            )


def _parse_header(r: _Reader) -> QuoteHeader:
    raw = r.take(HEADER_LEN, "header")
    version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", raw)
    return QuoteHeader(
        version=version,
        attestation_key_type=key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=raw[12:28],
        user_data=raw[28:48],
    )


def _parse_td_report(raw: bytes) -> TdReport:
    r = _Reader(raw)
    m = MEASUREMENT_LEN
    tee_tcb_svn = r.take(16, "tee_tcb_svn")
    mr_seam = r.take(m, "mr_seam")
    mr_signer_seam = r.take(m, "mr_signer_seam")
    seam_attributes = r.take(8, "seam_attributes")
    td_attributes = r.take(8, "td_attributes")
    xfam = r.take(8, "xfam")
    mr_td = r.take(m, "mr_td")
    mr_config_id = r.take(m, "mr_config_id")
    mr_owner = r.take(m, "mr_owner")
    mr_owner_config = r.take(m, "mr_owner_config")
    rtmrs = (r.take(m, "rtmr0"), r.take(m, "rtmr1"), r.take(m, "rtmr2"), r.take(m, "rtmr3"))
    report_data = r.take(64, "report_data")
    tee_tcb_svn2 = mr_service_td = None
    if len(raw) == TD_REPORT15_LEN:
        tee_tcb_svn2 = r.take(16, "tee_tcb_svn2")
        mr_service_td = r.take(m, "mr_service_td")
    r.done("TD report")
    return TdReport(
        tee_tcb_svn=tee_tcb_svn,
        mr_seam=mr_seam,
        mr_signer_seam=mr_signer_seam,
        seam_attributes=seam_attributes,
        td_attributes=td_attributes,
        xfam=xfam,
        mr_td=mr_td,
        mr_config_id=mr_config_id,
        mr_owner=mr_owner,
        mr_owner_config=mr_owner_config,
        rtmrs=rtmrs,
        report_data=report_data,
        tee_tcb_svn2=tee_tcb_svn2,
        mr_service_td=mr_service_td,
    )


def _parse_cert_data(r: _Reader, what: str) -> CertificationData:
    cert_type = r.u16(f"{what} type")
    size = r.u32(f"{what} size")
    return CertificationData(cert_type, r.sized(size, what))


def _parse_qe_report_data(data: bytes) -> QeReportCertificationData:
    r = _Reader(data)
    qe_report = r.take(QE_REPORT_LEN, "QE report")
    qe_report_signature = r.take(ECDSA_SIGNATURE_LEN, "QE report signature")
    qe_auth_data = r.sized(r.u16("QE auth data size"), "QE auth data")
    certification = _parse_cert_data(r, "PCK certification data")
    r.done("QE report certification data")
    return QeReportCertificationData(qe_report, qe_report_signature, qe_auth_data, certification)


def parse_tdx_quote(data: bytes) -> TdxQuote:
    """Parse a TDX quote v4 or v5; raise EvidenceError("malformed") on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EvidenceError("malformed", f"a quote is bytes, not {type(data).__name__}")
    data = bytes(data)
    r = _Reader(data)
    header = _parse_header(r)
    if header.version not in (4, 5):
        raise EvidenceError("malformed", f"unsupported quote version {header.version}")
    if header.tee_type != TEE_TYPE_TDX:
        raise EvidenceError("malformed", f"not a TDX quote (TEE type {header.tee_type:#x})")
    if header.attestation_key_type != ATTESTATION_KEY_ECDSA_P256:
        raise EvidenceError(
            "malformed", f"unsupported attestation key type {header.attestation_key_type}"
        )
    if header.version == 4:
        body_type, body_len = BODY_TD_REPORT10, TD_REPORT10_LEN
    else:
        body_type = r.u16("body type")
        body_len = r.u32("body size")
        expected = {BODY_TD_REPORT10: TD_REPORT10_LEN, BODY_TD_REPORT15: TD_REPORT15_LEN}
        if body_type not in expected:
            raise EvidenceError("malformed", f"unsupported quote body type {body_type}")
        if body_len != expected[body_type]:
            raise EvidenceError(
                "malformed", f"body type {body_type} must be {expected[body_type]} bytes"
            )
    report = _parse_td_report(r.take(body_len, "TD report"))
    signed = data[: r.pos]
    sig = _Reader(r.sized(r.u32("signature data size"), "signature data"))
    # Real quotes are often zero-padded after the signature data (the
    # sample has 70 such bytes); like Intel's QVL we ignore what follows.
    signature = sig.take(ECDSA_SIGNATURE_LEN, "quote signature")
    attestation_key = sig.take(ECDSA_PUBLIC_KEY_LEN, "attestation key")
    certification = _parse_cert_data(sig, "certification data")
    sig.done("certification data")
    qe = (
        _parse_qe_report_data(certification.data)
        if certification.cert_type == CERT_DATA_QE_REPORT
        else None
    )
    return TdxQuote(
        header=header,
        body_type=body_type,
        report=report,
        signed=signed,
        signature=signature,
        attestation_key=attestation_key,
        certification=certification,
        qe=qe,
    )
