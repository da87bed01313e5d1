"""The shared TDX test vectors (``../shared/test-vectors/tdx`` beside the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TDX_DIR = REPO_ROOT / ".." / "shared" / "test-vectors" / "tdx"

ISSUE_TIME = 1_750_331_763
"""TCB info issue time + 1 h: the sample quote is UpToDate then."""
AFTER_EXPIRY = 1_790_000_000
"""After the sample's CRLs' next update (1775215317)."""


def _read(name: str) -> bytes:
    path = TDX_DIR / name
    if not path.is_file():
        pytest.skip(f"shared TDX test vector {path} is absent (shared/ must sit beside the repo)")
    return path.read_bytes()


def sample_quote() -> bytes:
    return _read("tdx_quote")


def sample_collateral() -> str:
    return _read("tdx_quote_collateral.json").decode()
