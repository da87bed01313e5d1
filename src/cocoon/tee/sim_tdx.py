"""Simulated TDX: a stand-in platform that issues real-format quotes under a
stand-in Intel PKI (the PKI itself is in :mod:`cocoon.tee.sim_intel_pki`).

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
  PCESVN, CPUSVN, PCE-ID, FMSPC, SGX type), DER-encoded by hand.
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

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cocoon.tee.evidence import Evidence
from cocoon.tee.sim_intel_pki import (
    QE_ATTRIBUTES,
    QE_ISVPRODID,
    QE_ISVSVN,
    QE_MRSIGNER,
    UP_TO_DATE_PCESVN,
    SimulatedIntelPki,
    derive_p256_key,
    pem_chain,
    raw_signature,
)
from cocoon.tee.sim_pki import check_report_data, local_build_image
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
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
TEE_TCB_SVN = bytes([6, 1, 3] + [0] * 13)  # module ISVSVN 6, module version 1 (TDX_01)
SEPT_VE_DISABLE = 1 << 28  # TDATTRIBUTES bit 28; dcap-qvl requires it set


def _raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:]  # x‖y without the 0x04 prefix


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


class SimTdxProvider:
    """AttestationProvider "sim-tdx": TDX v4 quotes from a simulated platform."""

    name: str = SIM_TDX_PROVIDER

    def __init__(
        self, pki: SimulatedIntelPki | None = None, platform: SimTdxPlatform | None = None
    ) -> None:
        self.pki = pki if pki is not None else SimulatedIntelPki()
        self.platform = platform if platform is not None else SimTdxPlatform()
        seed = self.pki.seed
        self.pck_key = derive_p256_key(seed, f"pck-{self.platform.pce_svn}")
        self.attestation_key = derive_p256_key(seed, "attestation-key")
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
        check_report_data(report_data)
        header = struct.pack("<HHIHH", 4, ATTESTATION_KEY_ECDSA_P256, TEE_TYPE_TDX, 0, 0)
        header += INTEL_QE_VENDOR_ID + b"\x00" * 20
        signed = header + self._td_report(report_data)
        attestation_public = _raw_public(self.attestation_key)
        qe_auth_data = hashlib.sha256(b"cocoon sim qe auth").digest()
        qe_report = self._qe_report(
            hashlib.sha256(attestation_public + qe_auth_data).digest() + b"\x00" * 32
        )
        chain = (
            pem_chain(self.pck_cert, self.pki.pck_ca_cert, self.pki.root_cert).encode() + b"\x00"
        )
        inner = b"".join(
            [
                qe_report,
                raw_signature(self.pck_key, qe_report),
                struct.pack("<H", len(qe_auth_data)),
                qe_auth_data,
                struct.pack("<HI", CERT_DATA_PCK_CHAIN, len(chain)),
                chain,
            ]
        )
        signature_data = b"".join(
            [
                raw_signature(self.attestation_key, signed),
                attestation_public,
                struct.pack("<HI", CERT_DATA_QE_REPORT, len(inner)),
                inner,
            ]
        )
        return signed + struct.pack("<I", len(signature_data)) + signature_data


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
