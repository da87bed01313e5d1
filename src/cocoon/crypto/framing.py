"""Unambiguous length-prefixed encoding of byte fields, for signatures, AAD and HPKE info."""

from __future__ import annotations


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate fields, each preceded by its 4-byte big-endian length."""
    # A bare concatenation would let ("ab", "c") collide with ("a", "bc").
    return b"".join(len(field).to_bytes(4, "big") + field for field in fields)
