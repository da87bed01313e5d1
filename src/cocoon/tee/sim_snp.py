"""Simulated SEV-SNP: a stand-in AMD PKI and chip that issue real-format reports.

Development and tests run the very same verification as production
(:func:`cocoon.tee.snp_policy.check_snp_report`), only with a pinned root of
our own. What is simulated, and how it mirrors AMD's (KDS specification; the
report format of :mod:`cocoon.tee.snp_report`):

- **ARK** (self-signed) and **ASK** (signed by the ARK): RSA keys signing with
  RSASSA-PSS/SHA-384, named ``ARK-Milan`` and ``SEV-Milan`` as AMD's are, but
  of organisation "Cocoon (simulated, not AMD)". 2048-bit where AMD's are
  4096-bit: the keys are derived from the seed at start, and 4096-bit primes
  would cost every node seconds (measured: 2048-bit, about 0.9 s for both
  keys on one core, once per process).
- **VCEK** per chip and TCB: an ECDSA P-384 key derived from the seed, the
  chip id and the TCB (as AMD derives one per chip and TCB), in a certificate
  signed by the ASK, with AMD's extensions (product name, patch levels, hwID)
  and serial number 0, exactly like AMD's: so the zero-serial path of
  :mod:`cocoon.tee.snp_certs` runs in every simulated network.
- **Report**: a version 3 report (Milan CPUID) whose REPORT_DATA is the
  node's, signed by the VCEK over bytes 0x000..0x29F.

Keys derive deterministically from a *seed*, so every node of a simulated
network builds the same root without sharing files; anyone can therefore
forge sim-snp reports, and simulated evidence is trusted only by a node that
is itself simulated (see :func:`sim_snp_verifier`).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from functools import cache, cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cocoon.tee import der
from cocoon.tee.evidence import Evidence
from cocoon.tee.sim_pki import (
    CERT_NOT_AFTER,
    CERT_NOT_BEFORE,
    check_report_data,
    local_build_image,
    oid_entry,
    sim_certificate,
)
from cocoon.tee.snp_certs import KDS_HWID, KDS_PREFIX, KDS_PRODUCT_NAME, KDS_TCB, Roots
from cocoon.tee.snp_policy import SnpEvidence, SnpPolicy, SnpVerifier, encode_snp_evidence
from cocoon.tee.snp_report import (
    MILAN,
    POLICY_DEBUG,
    POLICY_RESERVED_ONE,
    POLICY_SMT,
    REPORT_LEN,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNED_LEN,
    compose_tcb,
    snp_image_hash,
)

SIM_SNP_PROVIDER = "sim-snp"
DEFAULT_SEED = b"cocoon-sim-snp"
SIM_TCB = {"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213}
SIM_FIRMWARE = (1, 55, 21)  # major, minor, build
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
# AlgorithmIdentifier of RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1:
# byte for byte as in AMD's VCEKs.
_PSS_ALGORITHM = bytes.fromhex(
    "304606092a864886f70d01010a3039a00f300d06096086480165030402020500"
    "a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130a303020101"
)
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)


# -- deterministic keys ------------------------------------------------------------


def _stream(seed: bytes, label: str, n: int) -> int:
    return int.from_bytes(hashlib.shake_256(seed + b"\x00" + label.encode()).digest(n), "big")


def _small_primes(bound: int) -> list[int]:
    sieve = bytearray([1]) * bound
    sieve[:2] = b"\x00\x00"
    for i in range(2, math.isqrt(bound) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, bound, i)))
    return [i for i in range(3, bound) if sieve[i]]


_PRIMORIAL = math.prod(_small_primes(20000))
# Rounds for a random 1024-bit candidate: FIPS 186-5 Table B.1 asks 4 for a
# 2048-bit key; the seed is public anyway, this only has to be a valid key.
_MILLER_RABIN_ROUNDS = 5


def _probably_prime(n: int, seed: bytes, label: str) -> bool:
    if math.gcd(n, _PRIMORIAL) != 1:  # one big gcd instead of a division per small prime
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for i in range(_MILLER_RABIN_ROUNDS):
        a = 2 + _stream(seed, f"{label}/witness/{i}", 64) % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(seed: bytes, label: str, bits: int) -> int:
    # The first probable prime at or after a seeded odd number with its top two
    # bits set (so that p*q has exactly 2*bits bits).
    start = _stream(seed, label, bits // 8) | (3 << (bits - 2)) | 1
    candidate = start
    while not _probably_prime(candidate, seed, label) or (candidate - 1) % 65537 == 0:
        candidate += 2
    return candidate


@cache
def derive_rsa_key(seed: bytes, label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key that is a pure function of ``(seed, label)``."""
    e = 65537
    p = _prime(seed, f"{label}/p", bits // 2)
    q = _prime(seed, f"{label}/q", bits // 2)
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def _derive_p384(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    scalar = _stream(seed, label, 64) % (_P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cocoon (simulated, not AMD)"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca_certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
) -> x509.Certificate:
    return sim_certificate(
        subject=subject,
        public_key=key.public_key(),
        issuer=issuer,
        issuer_key=issuer_key,
        serial=serial,
        ca=True,
        algorithm=hashes.SHA384(),
        rsa_padding=_PSS,
    )


def _extension(oid: str, value: bytes) -> bytes:
    return oid_entry(oid, der.encode(der.OCTET_STRING, value))


@dataclass(frozen=True)
class SimSnpPlatform:
    """The simulated chip: its id, TCB and the guest image it launched."""

    measurement: bytes = field(default_factory=lambda: hashlib.sha384(b"cocoon sim snp").digest())
    chip_id: bytes = field(default_factory=lambda: hashlib.sha512(b"cocoon sim chip").digest())
    tcb: dict[str, int] = field(default_factory=lambda: dict(SIM_TCB))
    debug: bool = False
    smt: bool = True

    @property
    def image_hash(self) -> str:
        return snp_image_hash(self.measurement)

    @property
    def reported_tcb(self) -> int:
        return compose_tcb(self.tcb, MILAN)


def platform_for_image(name: str, *, debug: bool = False, chip: str = "") -> SimSnpPlatform:
    """A chip whose launch measurement is derived from an image name (e.g. a build id)."""
    return SimSnpPlatform(
        measurement=hashlib.sha384(f"cocoon sim snp {name}".encode()).digest(),
        chip_id=hashlib.sha512(f"cocoon sim chip {chip}".encode()).digest(),
        debug=debug,
    )


class SimulatedAmdPki:
    """ARK, ASK and per-chip VCEKs, all from one seed."""

    def __init__(self, seed: bytes = DEFAULT_SEED) -> None:
        self.seed = seed
        self.ark_key = derive_rsa_key(seed, "ark")
        self.ask_key = derive_rsa_key(seed, "ask")
        self.ark_name = _name(f"ARK-{MILAN}")
        self.ask_name = _name(f"SEV-{MILAN}")

    @cached_property
    def ark(self) -> x509.Certificate:
        return _ca_certificate(self.ark_name, self.ark_key, self.ark_name, self.ark_key, 65536)

    @cached_property
    def ask(self) -> x509.Certificate:
        return _ca_certificate(self.ask_name, self.ask_key, self.ark_name, self.ark_key, 65537)

    @property
    def roots(self) -> Roots:
        """What a verifier of this PKI pins."""
        return {MILAN: (self.ask, self.ark)}

    @property
    def chain_pem(self) -> bytes:
        """ASK then ARK, as the key distribution service serves them."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.ask, self.ark))

    def vcek_key(self, chip_id: bytes, reported_tcb: int) -> ec.EllipticCurvePrivateKey:
        return _derive_p384(self.seed, f"vcek/{chip_id.hex()}/{reported_tcb:016x}")

    def vcek(self, chip_id: bytes, tcb: dict[str, int]) -> bytes:
        """The DER VCEK of a chip at a TCB, serial 0 and AMD's extensions, signed by the ASK."""
        key = self.vcek_key(chip_id, compose_tcb(tcb, MILAN))
        extensions = [
            _extension(KDS_PREFIX + "1", der.encode_int(0)),
            _extension(KDS_PRODUCT_NAME, der.encode(der.IA5_STRING, f"{MILAN}-B0".encode())),
            *(
                _extension(oid, der.encode_int(tcb.get(name, 0)))
                for oid, name in KDS_TCB.items()
                if name != "fmc"
            ),
            _extension(KDS_HWID, chip_id),
        ]
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tbs = der.encode_seq(
            der.encode(0xA0, der.encode_int(2)),
            der.encode_int(0),
            _PSS_ALGORITHM,
            self.ask_name.public_bytes(),
            der.encode_seq(
                der.encode_time(int(CERT_NOT_BEFORE.timestamp())),
                der.encode_time(int(CERT_NOT_AFTER.timestamp())),
            ),
            _name("SEV-VCEK").public_bytes(),
            spki,
            der.encode(0xA3, der.encode_seq(*extensions)),
        )
        signature = self.ask_key.sign(tbs, _PSS, hashes.SHA384())
        return der.encode_seq(tbs, _PSS_ALGORITHM, der.encode(der.BIT_STRING, b"\x00" + signature))


def _report_body(platform: SimSnpPlatform, report_data: bytes) -> bytes:
    policy = POLICY_RESERVED_ONE | (POLICY_SMT if platform.smt else 0)
    policy |= POLICY_DEBUG if platform.debug else 0
    tcb = platform.reported_tcb
    major, minor, build = SIM_FIRMWARE
    body = b"".join(
        [
            struct.pack("<IIQ", 3, 0, policy),  # VERSION, GUEST_SVN, POLICY
            b"\x00" * 32,  # FAMILY_ID, IMAGE_ID
            struct.pack("<IIQQ", 0, SIG_ALGO_ECDSA_P384_SHA384, tcb, int(platform.smt)),
            struct.pack("<II", 0, 0),  # signer info: VCEK; reserved
            report_data,
            platform.measurement,
            b"\x00" * 32,  # HOST_DATA
            b"\x00" * 96,  # ID_KEY_DIGEST, AUTHOR_KEY_DIGEST
            hashlib.sha256(platform.chip_id + report_data).digest(),  # REPORT_ID
            b"\xff" * 32,  # REPORT_ID_MA: no migration agent
            struct.pack("<Q", tcb),  # REPORTED_TCB
            bytes([0x19, 0x01, 0x01]) + b"\x00" * 21,  # CPUID family, model, stepping (Milan B1)
            platform.chip_id,
            struct.pack("<Q", tcb),  # COMMITTED_TCB
            bytes([build, minor, major, 0, build, minor, major, 0]),
            struct.pack("<Q", tcb),  # LAUNCH_TCB
        ]
    )
    return body + b"\x00" * (SIGNED_LEN - len(body))


class SimSnpProvider:
    """AttestationProvider "sim-snp": v3 reports from a simulated chip, with its VCEK."""

    name: str = SIM_SNP_PROVIDER

    def __init__(
        self, pki: SimulatedAmdPki | None = None, platform: SimSnpPlatform | None = None
    ) -> None:
        self.pki = pki if pki is not None else shared_pki()
        self.platform = platform if platform is not None else SimSnpPlatform()
        self.vcek_key = self.pki.vcek_key(self.platform.chip_id, self.platform.reported_tcb)
        self.vcek = self.pki.vcek(self.platform.chip_id, self.platform.tcb)

    def report(self, report_data: bytes) -> bytes:
        """A signed attestation report whose REPORT_DATA is ``report_data``."""
        check_report_data(report_data)
        signed = _report_body(self.platform, report_data)
        r, s = decode_dss_signature(self.vcek_key.sign(signed, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(72, "little") + s.to_bytes(72, "little")
        return signed + signature + b"\x00" * (REPORT_LEN - SIGNED_LEN - len(signature))

    def evidence(self, report_data: bytes) -> Evidence:
        bundle = SnpEvidence(report=self.report(report_data), vcek=self.vcek)
        return Evidence(provider=SIM_SNP_PROVIDER, quote=encode_snp_evidence(bundle))


def local_build_platform(image: str = "", *, debug: bool = False) -> SimSnpPlatform:
    """The simulated chip running ``image`` (default: this build)."""
    return platform_for_image(image or local_build_image(), debug=debug)


@cache
def shared_pki() -> SimulatedAmdPki:
    """The process-wide simulated AMD PKI of :data:`DEFAULT_SEED`."""
    return SimulatedAmdPki()


def sim_snp_verifier(policy: SnpPolicy | None = None, *, trusted: bool) -> SnpVerifier:
    """A verifier of sim-snp reports: the real checks against the simulated ARK."""
    return SnpVerifier(
        roots=lambda: shared_pki().roots,
        policy=policy,
        provider=SIM_SNP_PROVIDER,
        trusted=trusted,
        simulated=True,
    )
