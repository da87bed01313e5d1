"""Hash helpers shared by the crypto layer."""

from __future__ import annotations

import hashlib


def sha256(data: bytes) -> bytes:
    """Return the SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()
