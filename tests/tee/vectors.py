"""The TDX test vectors, carried in `tests/tee/data/tdx/` (their source: its README)."""

from __future__ import annotations

from pathlib import Path

TDX_DIR = Path(__file__).resolve().parent / "data" / "tdx"

ISSUE_TIME = 1_750_331_763
"""TCB info issue time + 1 h: the sample quote is UpToDate then."""
AFTER_EXPIRY = 1_790_000_000
"""After the sample's CRLs' next update (1775215317)."""


def _read(name: str) -> bytes:
    # No skip: a missing vector is a broken checkout, and must fail loudly.
    return (TDX_DIR / name).read_bytes()


def sample_quote() -> bytes:
    return _read("tdx_quote")


def sample_collateral() -> str:
    return _read("tdx_quote_collateral.json").decode()


SNP_DIR = Path(__file__).resolve().parent / "data" / "sev-snp"

SNP_VECTOR_TIME = 1_700_000_000
"""2023-11-14: inside the VCEK's validity (2022-09-24 to 2029-09-24)."""
SNP_AFTER_VCEK = 1_900_000_000
"""2030-03-17: after the VCEK's not-after."""


def snp_report() -> bytes:
    return (SNP_DIR / "attestation.bin").read_bytes()


def snp_vcek() -> bytes:
    return (SNP_DIR / "vcek.der").read_bytes()


def snp_chain() -> bytes:
    return (SNP_DIR / "ask_ark_milan.pem").read_bytes()
