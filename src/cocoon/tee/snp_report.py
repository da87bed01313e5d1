"""AMD SEV-SNP attestation reports (versions 2 to 5): parse the bytes, nothing more.

Sans-IO and pure: no signature is checked here (that is
:mod:`cocoon.tee.snp_policy` with the VCEK of :mod:`cocoon.tee.snp_certs`),
but every length and every must-be-zero field is, so that anything that is not
a well-formed report raises :class:`~cocoon.tee.errors.EvidenceError` with
reason ``"malformed"`` and nothing else.

Layout (AMD SEV Secure Nested Paging Firmware ABI Specification, 56860,
"ATTESTATION_REPORT Structure"; all integers little-endian; 0x4A0 bytes)::

    0x000 VERSION u32            0x004 GUEST_SVN u32        0x008 POLICY u64
    0x010 FAMILY_ID [16]         0x020 IMAGE_ID [16]        0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32     0x038 CURRENT_TCB u64      0x040 PLATFORM_INFO u64
    0x048 signer info u32 (bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY,
          bits 4:2 SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none)     0x04C reserved u32
    0x050 REPORT_DATA [64]       0x090 MEASUREMENT [48]     0x0C0 HOST_DATA [32]
    0x0E0 ID_KEY_DIGEST [48]     0x110 AUTHOR_KEY_DIGEST [48]
    0x140 REPORT_ID [32]         0x160 REPORT_ID_MA [32]    0x180 REPORTED_TCB u64
    0x188 v3+: CPUID_FAM_ID u8, CPUID_MOD_ID u8, CPUID_STEP u8; then reserved
    0x1A0 CHIP_ID [64]           0x1E0 COMMITTED_TCB u64
    0x1E8 CURRENT_BUILD, _MINOR, _MAJOR u8, reserved u8
    0x1EC COMMITTED_BUILD, _MINOR, _MAJOR u8, reserved u8   0x1F0 LAUNCH_TCB u64
    0x1F8 v5: LAUNCH_MIT_VECTOR u64, 0x200 CURRENT_MIT_VECTOR u64; then reserved
    0x2A0 SIGNATURE [512]: R [72] and S [72], little-endian, zero-padded

The signature (algorithm 1: ECDSA P-384 with SHA-384) covers bytes
0x000..0x29F. A TCB_VERSION packs one security patch level per byte; which
byte is which depends on the product (Turin added the FMC), see
:func:`tcb_components`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cocoon.tee.errors import EvidenceError

REPORT_LEN = 0x4A0
SIGNED_LEN = 0x2A0
SIGNATURE_COMPONENT_LEN = 72
SIG_ALGO_ECDSA_P384_SHA384 = 1
MIN_VERSION = 2
MAX_VERSION = 5

POLICY_SMT = 1 << 16
POLICY_RESERVED_ONE = 1 << 17  # the ABI says this bit must be 1
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20

PLATFORM_SMT_EN = 1 << 0
PLATFORM_TSME_EN = 1 << 1

SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1

MILAN, GENOA, TURIN = "Milan", "Genoa", "Turin"
PRODUCTS = (MILAN, GENOA, TURIN)

# (family, model) from CPUID leaf 1, in v3+ reports (AMD KDS specification,
# "Determining the Product Name").
_PRODUCT_BY_CPUID = {(0x19, 0x01): MILAN, (0x19, 0x11): GENOA, (0x1A, 0x02): TURIN}

_TCB_BYTES = {
    # byte index in the little-endian u64 → component
    MILAN: {0: "bootloader", 1: "tee", 6: "snp", 7: "microcode"},
    GENOA: {0: "bootloader", 1: "tee", 6: "snp", 7: "microcode"},
    TURIN: {0: "fmc", 1: "bootloader", 2: "tee", 3: "snp", 7: "microcode"},
}
TCB_COMPONENTS = ("fmc", "bootloader", "tee", "snp", "microcode")


def tcb_components(tcb: int, product: str) -> dict[str, int]:
    """A TCB_VERSION's security patch levels by name, in the product's layout."""
    raw = tcb.to_bytes(8, "little")
    return {name: raw[i] for i, name in _TCB_BYTES[product].items()}


def compose_tcb(levels: dict[str, int], product: str) -> int:
    """The TCB_VERSION with these patch levels (the inverse of :func:`tcb_components`)."""
    raw = bytearray(8)
    for i, name in _TCB_BYTES[product].items():
        raw[i] = levels.get(name, 0)
    return int.from_bytes(raw, "little")


@dataclass(frozen=True)
class SnpReport:
    """A parsed SEV-SNP attestation report; ``signed`` is the exact range the VCEK signs."""

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid: tuple[int, int, int] | None
    """(family, model, stepping), version 3 and later."""
    chip_id: bytes
    committed_tcb: int
    current_version: tuple[int, int, int]
    """Firmware (major, minor, build)."""
    committed_version: tuple[int, int, int]
    launch_tcb: int
    launch_mit_vector: int | None
    """Version 5 and later."""
    current_mit_vector: int | None
    signed: bytes
    signature_r: int
    signature_s: int

    @property
    def debug(self) -> bool:
        """The guest allows debugging: the host can read and write its memory."""
        return bool(self.policy & POLICY_DEBUG)

    @property
    def migration_agent(self) -> bool:
        """The guest may be bound to a migration agent (which can export its memory)."""
        return bool(self.policy & POLICY_MIGRATE_MA)

    @property
    def smt_allowed(self) -> bool:
        return bool(self.policy & POLICY_SMT)

    @property
    def smt_enabled(self) -> bool:
        """SMT is on on the platform (PLATFORM_INFO bit 0)."""
        return bool(self.platform_info & PLATFORM_SMT_EN)

    @property
    def signing_key(self) -> int:
        """0: the chip's VCEK; 1: a VLEK; 7: none (the report is unsigned)."""
        return (self.signer_info >> 2) & 0x7

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & 1)

    @property
    def mask_chip_id(self) -> bool:
        return bool(self.signer_info & 2)

    @property
    def product(self) -> str | None:
        """The product named by the CPUID fields (v3+), or None (v2, or unknown)."""
        if self.cpuid is None:
            return None
        return _PRODUCT_BY_CPUID.get(self.cpuid[:2])

    @property
    def image_hash(self) -> str:
        """SHA-256 (hex) of the launch measurement: the one "image" notion shared with TDX."""
        return snp_image_hash(self.measurement)

    def measurements(self, product: str) -> dict[str, str]:
        """The measurements and TCB as strings, for verdicts and status outputs."""
        out = {
            "measurement": self.measurement.hex(),
            "image_hash": self.image_hash,
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "report_version": str(self.version),
            "product": product,
            "policy": f"{self.policy:#x}",
            "vmpl": str(self.vmpl),
            "guest_svn": str(self.guest_svn),
            "chip_id": self.chip_id.hex(),
            "reported_tcb": f"{self.reported_tcb:#018x}",
            "firmware": "{}.{}.{}".format(*self.current_version),
            "debug": str(self.debug).lower(),
        }
        for name, level in tcb_components(self.reported_tcb, product).items():
            out[f"tcb_{name}"] = str(level)
        return out


def snp_image_hash(measurement: bytes) -> str:
    """SHA-256 (hex) of a 48-byte launch measurement."""
    return hashlib.sha256(measurement).hexdigest()


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _u64(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<Q", data, offset)[0]
    return value


def _zero(data: bytes, start: int, end: int) -> None:
    if any(data[start:end]):
        raise EvidenceError(
            "malformed", f"reserved bytes {start:#x}..{end - 1:#x} of the report are not zero"
        )


def parse_snp_report(data: bytes) -> SnpReport:
    """Parse an attestation report; raise EvidenceError("malformed") on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EvidenceError("malformed", f"a report is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != REPORT_LEN:
        raise EvidenceError(
            "malformed", f"an SEV-SNP report is {REPORT_LEN} bytes, got {len(data)}"
        )
    version = _u32(data, 0x00)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise EvidenceError("malformed", f"unsupported SEV-SNP report version {version}")
    policy = _u64(data, 0x08)
    if not policy & POLICY_RESERVED_ONE:
        raise EvidenceError("malformed", f"guest policy {policy:#x} lacks its reserved bit 17")
    signature_algo = _u32(data, 0x34)
    if signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise EvidenceError("malformed", f"unsupported signature algorithm {signature_algo}")
    signer_info = _u32(data, 0x48)
    if signer_info >> 5:
        raise EvidenceError("malformed", f"reserved signer info bits set ({signer_info:#x})")
    _zero(data, 0x4C, 0x50)
    cpuid = None
    if version >= 3:
        cpuid = (data[0x188], data[0x189], data[0x18A])
        _zero(data, 0x18B, 0x1A0)
    else:
        _zero(data, 0x188, 0x1A0)
    _zero(data, 0x1EB, 0x1EC)
    _zero(data, 0x1EF, 0x1F0)
    launch_mit = current_mit = None
    if version >= 5:
        launch_mit, current_mit = _u64(data, 0x1F8), _u64(data, 0x200)
        _zero(data, 0x208, SIGNED_LEN)
    else:
        _zero(data, 0x1F8, SIGNED_LEN)
    r_at, s_at = SIGNED_LEN, SIGNED_LEN + SIGNATURE_COMPONENT_LEN
    _zero(data, s_at + SIGNATURE_COMPONENT_LEN, REPORT_LEN)
    return SnpReport(
        version=version,
        guest_svn=_u32(data, 0x04),
        policy=policy,
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=_u32(data, 0x30),
        signature_algo=signature_algo,
        current_tcb=_u64(data, 0x38),
        platform_info=_u64(data, 0x40),
        signer_info=signer_info,
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=_u64(data, 0x180),
        cpuid=cpuid,
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=_u64(data, 0x1E0),
        current_version=(data[0x1EA], data[0x1E9], data[0x1E8]),
        committed_version=(data[0x1EE], data[0x1ED], data[0x1EC]),
        launch_tcb=_u64(data, 0x1F0),
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        signed=data[:SIGNED_LEN],
        signature_r=int.from_bytes(data[r_at:s_at], "little"),
        signature_s=int.from_bytes(data[s_at : s_at + SIGNATURE_COMPONENT_LEN], "little"),
    )


def is_snp_report(data: bytes) -> bool:
    """Whether ``data`` looks like an SEV-SNP report (size and version), before parsing."""
    return len(data) == REPORT_LEN and MIN_VERSION <= _u32(data, 0) <= MAX_VERSION
