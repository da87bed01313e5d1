"""Unambiguous length-prefixed encoding of byte fields, for signatures, AAD and HPKE info."""

from __future__ import annotations

import struct

_LENGTH = struct.Struct(">I").pack


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate fields, each preceded by its 4-byte big-endian length."""
    # A bare concatenation would let ("ab", "c") collide with ("a", "bc").
    parts = []
    for field in fields:
        parts.append(_LENGTH(len(field)))
        parts.append(field)
    return b"".join(parts)
