"""Simulated TDX: a stand-in Intel PKI and platform that issue real-format quotes.

Development and tests run the very same verification as production —
``dcap_qvl.verify_with_root_ca`` through :func:`cocoon.tee.dcap.verify_quote`
— only with a root CA of our own. What is simulated, and how it mirrors
Intel's DCAP PKI (Intel SGX PCK Certificate and CRL Profile; the TDX quote
format of :mod:`cocoon.tee.tdx_quote`):

- **Root CA** (self-signed, ECDSA P-256, CA, keyCertSign + cRLSign), which
  issues the **PCK Platform CA** (CA, pathlen 0) and the **TCB Signing**
  certificate (end entity) — exactly two CRL issuers, as dcap-qvl demands a
  CRL for every certificate of each chain (root CRL, PCK CRL).
- **PCK certificate** of the simulated platform, issued by the PCK CA, with
  Intel's SGX extension (OID 1.2.840.113741.1.13.1: PPID, TCB component SVNs,
  PCESVN, CPUSVN, PCE-ID, FMSPC, SGX type), DER-encoded here by hand.
- **TCB info** (TDX, version 3) and **QE identity** (TD_QE, version 2) JSON,
  signed by the TCB Signing key; two platform TCB levels (UpToDate; and
  OutOfDate with advisory ``INTEL-SA-00837``, reached by a platform with a
  lower PCESVN), so TCB policies can be exercised.
- **Quote**: a TDX v4 quote whose TD report is signed by an attestation key,
  that key bound by the QE report (SHA-256 of key ‖ QE auth data), the QE
  report signed by the PCK key, and the PCK chain embedded (certification
  data type 6 nesting type 5).

Keys derive deterministically from a *seed* (the network name by default),
so every node of a simulated network builds the same root without sharing
files. That also means anyone can forge sim-tdx quotes for a known seed:
simulated evidence is only ever trusted by a node that itself runs
``tee.provider = "sim-tdx"`` (see :func:`sim_tdx_verifier`); elsewhere the
default registry verifier checks it and returns an untrusted verdict.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
from dataclasses import dataclass, field
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cocoon import __version__
from cocoon.tee.claims import REPORT_DATA_LEN
from cocoon.tee.errors import EvidenceError
from cocoon.tee.evidence import Evidence
from cocoon.tee.tdx_policy import TdxPolicy, TdxVerifier
from cocoon.tee.tdx_quote import (
    ATTESTATION_KEY_ECDSA_P256,
    CERT_DATA_PCK_CHAIN,
    CERT_DATA_QE_REPORT,
    TD_ATTRIBUTES_DEBUG,
    TEE_TYPE_TDX,
    image_hash,
)

SIM_TDX_PROVIDER = "sim-tdx"
DEFAULT_SEED = b"cocoon-sim-tdx"
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
SIM_FMSPC = bytes.fromhex("50C0C0000000")
SIM_PCE_ID = b"\x00\x00"
SGX_COMPONENTS = bytes([2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0])
UP_TO_DATE_PCESVN = 11
OUT_OF_DATE_ADVISORY = "INTEL-SA-00837"
TDX_COMPONENTS = bytes([5, 0, 2] + [0] * 13)
TEE_TCB_SVN = bytes([6, 1, 3] + [0] * 13)  # module ISVSVN 6, module version 1 (TDX_01)
QE_MRSIGNER = hashlib.sha256(b"cocoon simulated TD quoting enclave signer").digest()
QE_ISVPRODID = 2
QE_ISVSVN = 4
QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
SEPT_VE_DISABLE = 1 << 28  # TDATTRIBUTES bit 28; dcap-qvl requires it set
COLLATERAL_VALIDITY_S = 30 * 86400
_CERT_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_CERT_NOT_AFTER = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
_SGX_EXT = "1.2.840.113741.1.13.1"


# -- a little DER, for the SGX extension -------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return _der(0x06, bytes(out))


def _int(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return _der(0x02, raw)


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _entry(oid: str, value: bytes) -> bytes:
    return _seq(_oid(oid), value)


def sgx_extension(*, ppid: bytes, cpu_svn: bytes, pce_svn: int, fmspc: bytes) -> bytes:
    """DER of Intel's SGX extension as it appears in a PCK certificate."""
    tcb = [_entry(f"{_SGX_EXT}.2.{i + 1}", _int(svn)) for i, svn in enumerate(cpu_svn)]
    tcb.append(_entry(f"{_SGX_EXT}.2.17", _int(pce_svn)))
    tcb.append(_entry(f"{_SGX_EXT}.2.18", _der(0x04, cpu_svn)))
    return _seq(
        _entry(f"{_SGX_EXT}.1", _der(0x04, ppid)),
        _entry(f"{_SGX_EXT}.2", _seq(*tcb)),
        _entry(f"{_SGX_EXT}.3", _der(0x04, SIM_PCE_ID)),
        _entry(f"{_SGX_EXT}.4", _der(0x04, fmspc)),
        _entry(f"{_SGX_EXT}.5", _der(0x0A, b"\x00")),  # SGX type: standard
    )


# -- keys, certificates, signatures ------------------------------------------


def _derive_key(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    digest = hashlib.sha512(seed + b"\x00" + label.encode()).digest()
    return ec.derive_private_key(int.from_bytes(digest, "big") % (order - 1) + 1, ec.SECP256R1())


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:]  # x‖y without the 0x04 prefix


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cocoon (simulated, not Intel)"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _serial(seed: bytes, label: str) -> int:
    return int.from_bytes(hashlib.sha256(seed + label.encode()).digest()[:15], "big") | 1


def _certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    ca: bool,
    path_length: int | None = None,
    extra: x509.ExtensionType | None = None,
) -> x509.Certificate:
    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    if ca:
        usage.update(key_cert_sign=True, crl_sign=True)
    else:
        usage.update(digital_signature=True, content_commitment=True)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_CERT_NOT_BEFORE)
        .not_valid_after(_CERT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _iso(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rtmrs(suffix: str) -> tuple[bytes, bytes, bytes, bytes]:
    r0, r1, r2, r3 = (
        hashlib.sha384(f"cocoon sim rtmr{i}{suffix}".encode()).digest() for i in range(4)
    )
    return r0, r1, r2, r3


@dataclass(frozen=True)
class SimTdxPlatform:
    """The simulated machine: its TCB level and the TD image it runs."""

    mr_td: bytes = field(default_factory=lambda: hashlib.sha384(b"cocoon sim td").digest())
    rtmrs: tuple[bytes, bytes, bytes, bytes] = field(default_factory=lambda: _rtmrs(""))
    debug: bool = False
    pce_svn: int = UP_TO_DATE_PCESVN
    """Below 11 the platform matches the OutOfDate TCB level (advisory INTEL-SA-00837)."""

    @property
    def image_hash(self) -> str:
        return image_hash(self.mr_td, self.rtmrs)


def platform_for_image(
    name: str, *, debug: bool = False, pce_svn: int = UP_TO_DATE_PCESVN
) -> SimTdxPlatform:
    """A platform whose MRTD and RTMRs are derived from an image name (e.g. a build id)."""
    return SimTdxPlatform(
        mr_td=hashlib.sha384(f"cocoon sim td {name}".encode()).digest(),
        rtmrs=_rtmrs(f" {name}"),
        debug=debug,
        pce_svn=pce_svn,
    )


class SimulatedIntelPki:
    """Root CA, PCK and TCB signing, CRLs and collateral, all from one seed."""

    def __init__(self, seed: bytes = DEFAULT_SEED) -> None:
        self.seed = seed
        self.root_key = _derive_key(seed, "root")
        self.pck_ca_key = _derive_key(seed, "pck-ca")
        self.tcb_key = _derive_key(seed, "tcb-signing")
        self.root_name = _name("Cocoon Simulated SGX Root CA")
        self.pck_ca_name = _name("Cocoon Simulated SGX PCK Platform CA")
        self._collateral: dict[int, str] = {}

    @cached_property
    def root_cert(self) -> x509.Certificate:
        return _certificate(
            subject=self.root_name,
            key=self.root_key,
            issuer=self.root_name,
            issuer_key=self.root_key,
            serial=_serial(self.seed, "root"),
            ca=True,
            path_length=1,
        )

    @property
    def root_ca_der(self) -> bytes:
        """The trust anchor to give ``verify_with_root_ca``."""
        return self.root_cert.public_bytes(serialization.Encoding.DER)

    @cached_property
    def pck_ca_cert(self) -> x509.Certificate:
        return _certificate(
            subject=self.pck_ca_name,
            key=self.pck_ca_key,
            issuer=self.root_name,
            issuer_key=self.root_key,
            serial=_serial(self.seed, "pck-ca"),
            ca=True,
            path_length=0,
        )

    @cached_property
    def tcb_cert(self) -> x509.Certificate:
        return _certificate(
            subject=_name("Cocoon Simulated SGX TCB Signing"),
            key=self.tcb_key,
            issuer=self.root_name,
            issuer_key=self.root_key,
            serial=_serial(self.seed, "tcb-signing"),
            ca=False,
        )

    def pck_certificate(self, key: ec.EllipticCurvePrivateKey, pce_svn: int) -> x509.Certificate:
        extension = sgx_extension(
            ppid=hashlib.sha256(self.seed + b"ppid").digest()[:16],
            cpu_svn=SGX_COMPONENTS,
            pce_svn=pce_svn,
            fmspc=SIM_FMSPC,
        )
        return _certificate(
            subject=_name("Cocoon Simulated SGX PCK Certificate"),
            key=key,
            issuer=self.pck_ca_name,
            issuer_key=self.pck_ca_key,
            serial=_serial(self.seed, f"pck-{pce_svn}"),
            ca=False,
            extra=x509.UnrecognizedExtension(x509.ObjectIdentifier(_SGX_EXT), extension),
        )

    def _crl(
        self, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, issued: int, expires: int
    ) -> bytes:
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer)
            .last_update(datetime.datetime.fromtimestamp(issued, tz=datetime.UTC))
            .next_update(datetime.datetime.fromtimestamp(expires, tz=datetime.UTC))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return crl.public_bytes(serialization.Encoding.DER)

    def tcb_info(self, issued: int, expires: int) -> str:
        def level(pce_svn: int, status: str, advisories: list[str]) -> dict[str, object]:
            out: dict[str, object] = {
                "tcb": {
                    "sgxtcbcomponents": [{"svn": svn} for svn in SGX_COMPONENTS],
                    "pcesvn": pce_svn,
                    "tdxtcbcomponents": [{"svn": svn} for svn in TDX_COMPONENTS],
                },
                "tcbDate": "2024-03-13T00:00:00Z",
                "tcbStatus": status,
            }
            if advisories:
                out["advisoryIDs"] = advisories
            return out

        module = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
        doc = {
            "id": "TDX",
            "version": 3,
            "issueDate": _iso(issued),
            "nextUpdate": _iso(expires),
            "fmspc": SIM_FMSPC.hex().upper(),
            "pceId": SIM_PCE_ID.hex(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": module,
            "tdxModuleIdentities": [
                {
                    "id": "TDX_01",
                    **module,
                    "tcbLevels": [
                        {
                            "tcb": {"isvsvn": 4},
                            "tcbDate": "2024-03-13T00:00:00Z",
                            "tcbStatus": "UpToDate",
                        }
                    ],
                }
            ],
            "tcbLevels": [
                level(UP_TO_DATE_PCESVN, "UpToDate", []),
                level(1, "OutOfDate", [OUT_OF_DATE_ADVISORY]),
            ],
        }
        return json.dumps(doc, separators=(",", ":"))

    def qe_identity(self, issued: int, expires: int) -> str:
        doc = {
            "id": "TD_QE",
            "version": 2,
            "issueDate": _iso(issued),
            "nextUpdate": _iso(expires),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": QE_ATTRIBUTES.hex().upper(),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER.hex().upper(),
            "isvprodid": QE_ISVPRODID,
            "tcbLevels": [
                {
                    "tcb": {"isvsvn": QE_ISVSVN},
                    "tcbDate": "2024-03-13T00:00:00Z",
                    "tcbStatus": "UpToDate",
                }
            ],
        }
        return json.dumps(doc, separators=(",", ":"))

    def collateral(self, now: int, validity_s: int = COLLATERAL_VALIDITY_S) -> str:
        """Collateral JSON valid from a little before ``now`` for ``validity_s``.

        Issued at the start of ``now``'s day (minus an hour), so that nodes
        whose clocks differ a little produce equivalent collateral, and cached
        per day.
        """
        issued = now - now % 86400 - 3600
        key = issued * 1_000_003 + validity_s
        cached = self._collateral.get(key)
        if cached is not None:
            return cached
        expires = issued + validity_s
        tcb_info = self.tcb_info(issued, expires)
        qe_identity = self.qe_identity(issued, expires)
        signing_chain = _pem(self.tcb_cert, self.root_cert)
        doc = {
            "pck_crl_issuer_chain": _pem(self.pck_ca_cert, self.root_cert),
            "root_ca_crl": self._crl(self.root_name, self.root_key, issued, expires).hex(),
            "pck_crl": self._crl(self.pck_ca_name, self.pck_ca_key, issued, expires).hex(),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": _raw_signature(self.tcb_key, tcb_info.encode()).hex(),
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": _raw_signature(self.tcb_key, qe_identity.encode()).hex(),
        }
        text = json.dumps(doc)
        self._collateral[key] = text
        return text


class SimTdxProvider:
    """AttestationProvider "sim-tdx": TDX v4 quotes from a simulated platform."""

    name: str = SIM_TDX_PROVIDER

    def __init__(
        self, pki: SimulatedIntelPki | None = None, platform: SimTdxPlatform | None = None
    ) -> None:
        self.pki = pki if pki is not None else SimulatedIntelPki()
        self.platform = platform if platform is not None else SimTdxPlatform()
        seed = self.pki.seed
        self.pck_key = _derive_key(seed, f"pck-{self.platform.pce_svn}")
        self.attestation_key = _derive_key(seed, "attestation-key")
        self.pck_cert = self.pki.pck_certificate(self.pck_key, self.platform.pce_svn)

    def evidence(self, report_data: bytes) -> Evidence:
        return Evidence(provider=SIM_TDX_PROVIDER, quote=self.quote(report_data))

    def _td_report(self, report_data: bytes) -> bytes:
        p = self.platform
        attributes = SEPT_VE_DISABLE | (TD_ATTRIBUTES_DEBUG if p.debug else 0)
        return b"".join(
            [
                TEE_TCB_SVN,
                hashlib.sha384(b"cocoon sim seam").digest(),  # MRSEAM
                b"\x00" * 48,  # MRSIGNERSEAM: Intel's, all zero
                b"\x00" * 8,  # SEAMATTRIBUTES
                struct.pack("<Q", attributes),
                bytes.fromhex("e702060000000000"),  # XFAM
                p.mr_td,
                b"\x00" * 48,  # MRCONFIGID
                b"\x00" * 48,  # MROWNER
                b"\x00" * 48,  # MROWNERCONFIG
                *p.rtmrs,
                report_data,
            ]
        )

    def _qe_report(self, report_data: bytes) -> bytes:
        return b"".join(
            [
                b"\x00" * 16,  # CPUSVN
                struct.pack("<I", 0),  # MISCSELECT
                b"\x00" * 28,
                QE_ATTRIBUTES,
                hashlib.sha256(b"cocoon sim qe").digest(),  # MRENCLAVE
                b"\x00" * 32,
                QE_MRSIGNER,
                b"\x00" * 96,
                struct.pack("<HH", QE_ISVPRODID, QE_ISVSVN),
                b"\x00" * 60,
                report_data,
            ]
        )

    def quote(self, report_data: bytes) -> bytes:
        """A signed TDX v4 quote whose REPORTDATA is ``report_data``."""
        if len(report_data) != REPORT_DATA_LEN:
            raise EvidenceError(
                "malformed", f"report data must be {REPORT_DATA_LEN} bytes, got {len(report_data)}"
            )
        header = struct.pack("<HHIHH", 4, ATTESTATION_KEY_ECDSA_P256, TEE_TYPE_TDX, 0, 0)
        header += INTEL_QE_VENDOR_ID + b"\x00" * 20
        signed = header + self._td_report(report_data)
        attestation_public = _raw_public(self.attestation_key)
        qe_auth_data = hashlib.sha256(b"cocoon sim qe auth").digest()
        qe_report = self._qe_report(
            hashlib.sha256(attestation_public + qe_auth_data).digest() + b"\x00" * 32
        )
        chain = _pem(self.pck_cert, self.pki.pck_ca_cert, self.pki.root_cert).encode() + b"\x00"
        inner = b"".join(
            [
                qe_report,
                _raw_signature(self.pck_key, qe_report),
                struct.pack("<H", len(qe_auth_data)),
                qe_auth_data,
                struct.pack("<HI", CERT_DATA_PCK_CHAIN, len(chain)),
                chain,
            ]
        )
        signature_data = b"".join(
            [
                _raw_signature(self.attestation_key, signed),
                attestation_public,
                struct.pack("<HI", CERT_DATA_QE_REPORT, len(inner)),
                inner,
            ]
        )
        return signed + struct.pack("<I", len(signature_data)) + signature_data


def local_build_image() -> str:
    """The simulated image name of this build: the measured image a sim network pins."""
    return f"cocoon-{__version__}"


def local_build_platform(image: str = "", *, debug: bool = False) -> SimTdxPlatform:
    """The simulated platform running ``image`` (default: this build)."""
    return platform_for_image(image or local_build_image(), debug=debug)


_SHARED_PKI: SimulatedIntelPki | None = None


def shared_pki() -> SimulatedIntelPki:
    """The process-wide simulated PKI of :data:`DEFAULT_SEED` (its collateral is cached)."""
    global _SHARED_PKI
    if _SHARED_PKI is None:
        _SHARED_PKI = SimulatedIntelPki()
    return _SHARED_PKI


def sim_tdx_verifier(policy: TdxPolicy | None = None, *, trusted: bool) -> TdxVerifier:
    """A verifier of sim-tdx quotes: real DCAP checks against the simulated root."""
    pki = shared_pki()
    return TdxVerifier(
        collateral=lambda raw, now: pki.collateral(now),
        policy=policy,
        provider=SIM_TDX_PROVIDER,
        root_ca_der=pki.root_ca_der,
        trusted=trusted,
    )
