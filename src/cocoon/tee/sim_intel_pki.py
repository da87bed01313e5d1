"""A simulated Intel PKI: root CA, PCK platform CA and TCB signing, their CRLs,
and the TCB info and QE identity collateral that DCAP verification reads.

It mirrors Intel's SGX PCK Certificate and CRL Profile closely enough that
`dcap_qvl.verify_with_root_ca` accepts it (see `sim_tdx` for the whole scheme);
all keys derive from one seed, so every node of a network builds the same root."""

from __future__ import annotations

import datetime
import hashlib
import json
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cocoon.tee import der
from cocoon.tee.sim_pki import oid_entry, sim_certificate

DEFAULT_SEED = b"cocoon-sim-tdx"
SIM_FMSPC = bytes.fromhex("50C0C0000000")
SIM_PCE_ID = b"\x00\x00"
SGX_COMPONENTS = bytes([2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0])
UP_TO_DATE_PCESVN = 11
OUT_OF_DATE_ADVISORY = "INTEL-SA-00837"
TDX_COMPONENTS = bytes([5, 0, 2] + [0] * 13)
QE_MRSIGNER = hashlib.sha256(b"cocoon simulated TD quoting enclave signer").digest()
QE_ISVPRODID = 2
QE_ISVSVN = 4
QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
COLLATERAL_VALIDITY_S = 30 * 86400
_SGX_EXT = "1.2.840.113741.1.13.1"
ENUMERATED = 0x0A


def sgx_extension(*, ppid: bytes, cpu_svn: bytes, pce_svn: int, fmspc: bytes) -> bytes:
    """DER of Intel's SGX extension as it appears in a PCK certificate."""
    tcb = [oid_entry(f"{_SGX_EXT}.2.{i + 1}", der.encode_int(svn)) for i, svn in enumerate(cpu_svn)]
    tcb.append(oid_entry(f"{_SGX_EXT}.2.17", der.encode_int(pce_svn)))
    tcb.append(oid_entry(f"{_SGX_EXT}.2.18", der.encode(der.OCTET_STRING, cpu_svn)))
    return der.encode_seq(
        oid_entry(f"{_SGX_EXT}.1", der.encode(der.OCTET_STRING, ppid)),
        oid_entry(f"{_SGX_EXT}.2", der.encode_seq(*tcb)),
        oid_entry(f"{_SGX_EXT}.3", der.encode(der.OCTET_STRING, SIM_PCE_ID)),
        oid_entry(f"{_SGX_EXT}.4", der.encode(der.OCTET_STRING, fmspc)),
        oid_entry(f"{_SGX_EXT}.5", der.encode(ENUMERATED, b"\x00")),  # SGX type: standard
    )


def derive_p256_key(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key of `label` under `seed`: the same on every node of a network."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    digest = hashlib.sha512(seed + b"\x00" + label.encode()).digest()
    return ec.derive_private_key(int.from_bytes(digest, "big") % (order - 1) + 1, ec.SECP256R1())


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-SHA256 as r||s, 32 bytes each (the form quotes and collateral carry)."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


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


def pem_chain(*certs: x509.Certificate) -> str:
    """The certificates in PEM, one after the other."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _iso(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimulatedIntelPki:
    """Root CA, PCK and TCB signing, CRLs and collateral, all from one seed."""

    def __init__(self, seed: bytes = DEFAULT_SEED) -> None:
        self.seed = seed
        self.root_key = derive_p256_key(seed, "root")
        self.pck_ca_key = derive_p256_key(seed, "pck-ca")
        self.tcb_key = derive_p256_key(seed, "tcb-signing")
        self.root_name = _name("Cocoon Simulated SGX Root CA")
        self.pck_ca_name = _name("Cocoon Simulated SGX PCK Platform CA")
        self._collateral: dict[int, str] = {}

    @cached_property
    def root_cert(self) -> x509.Certificate:
        return sim_certificate(
            subject=self.root_name,
            public_key=self.root_key.public_key(),
            issuer=self.root_name,
            issuer_key=self.root_key,
            serial=_serial(self.seed, "root"),
            algorithm=hashes.SHA256(),
            key_ids=True,
            ca=True,
            path_length=1,
        )

    @property
    def root_ca_der(self) -> bytes:
        """The trust anchor to give ``verify_with_root_ca``."""
        return self.root_cert.public_bytes(serialization.Encoding.DER)

    @cached_property
    def pck_ca_cert(self) -> x509.Certificate:
        return sim_certificate(
            subject=self.pck_ca_name,
            public_key=self.pck_ca_key.public_key(),
            issuer=self.root_name,
            issuer_key=self.root_key,
            serial=_serial(self.seed, "pck-ca"),
            algorithm=hashes.SHA256(),
            key_ids=True,
            ca=True,
            path_length=0,
        )

    @cached_property
    def tcb_cert(self) -> x509.Certificate:
        return sim_certificate(
            subject=_name("Cocoon Simulated SGX TCB Signing"),
            public_key=self.tcb_key.public_key(),
            issuer=self.root_name,
            issuer_key=self.root_key,
            serial=_serial(self.seed, "tcb-signing"),
            algorithm=hashes.SHA256(),
            key_ids=True,
            ca=False,
        )

    def pck_certificate(self, key: ec.EllipticCurvePrivateKey, pce_svn: int) -> x509.Certificate:
        extension = sgx_extension(
            ppid=hashlib.sha256(self.seed + b"ppid").digest()[:16],
            cpu_svn=SGX_COMPONENTS,
            pce_svn=pce_svn,
            fmspc=SIM_FMSPC,
        )
        return sim_certificate(
            subject=_name("Cocoon Simulated SGX PCK Certificate"),
            public_key=key.public_key(),
            issuer=self.pck_ca_name,
            issuer_key=self.pck_ca_key,
            serial=_serial(self.seed, f"pck-{pce_svn}"),
            algorithm=hashes.SHA256(),
            key_ids=True,
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
        signing_chain = pem_chain(self.tcb_cert, self.root_cert)
        doc = {
            "pck_crl_issuer_chain": pem_chain(self.pck_ca_cert, self.root_cert),
            "root_ca_crl": self._crl(self.root_name, self.root_key, issued, expires).hex(),
            "pck_crl": self._crl(self.pck_ca_name, self.pck_ca_key, issued, expires).hex(),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": raw_signature(self.tcb_key, tcb_info.encode()).hex(),
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": raw_signature(self.tcb_key, qe_identity.encode()).hex(),
        }
        text = json.dumps(doc)
        self._collateral[key] = text
        return text
