"""A small DER reader and writer (X.690), for what ``cryptography`` will not do for us.

AMD's VCEK certificates carry serial number 0. RFC 5280 wants serials
positive, and ``cryptography`` already warns when it loads one and has
announced that a future release will refuse it. A verifier that stops
accepting every real SEV-SNP machine on an upgrade is not an option, so
:mod:`cocoon.tee.snp_certs` reads the VCEK's parts (to-be-signed bytes,
signature, public key, validity, extensions) with this reader and checks the
signature itself; ``cryptography`` only verifies primitives. The simulated
AMD PKI writes its VCEKs (serial 0 too) with the writer half.

Only definite lengths, single-byte tags and what certificates use are
supported; anything else raises :class:`DerError`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
BOOLEAN = 0x01


class DerError(ValueError):
    """The bytes are not the DER this reader expects."""


@dataclass(frozen=True)
class Tlv:
    """One DER element: its tag, its content and the whole encoding."""

    tag: int
    content: bytes
    raw: bytes


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """The element at ``pos`` and the offset just after it."""
    if pos + 2 > len(data):
        raise DerError(f"truncated element at offset {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError(f"multi-byte tag at offset {pos}")
    first = data[pos + 1]
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise DerError(f"unsupported length form at offset {pos}")
        if start + n > len(data):
            raise DerError(f"truncated length at offset {pos}")
        length = int.from_bytes(data[start : start + n], "big")
        if length < 0x80 or data[start] == 0:
            raise DerError(f"non-minimal length at offset {pos}")
        start += n
    end = start + length
    if end > len(data):
        raise DerError(f"element at offset {pos} runs past the end ({length} bytes)")
    return Tlv(tag, data[start:end], data[pos:end]), end


def read_one(data: bytes, tag: int | None = None) -> Tlv:
    """Exactly one element filling ``data`` (with ``tag`` when given)."""
    tlv, end = read_tlv(data)
    if end != len(data):
        raise DerError(f"{len(data) - end} trailing bytes")
    if tag is not None and tlv.tag != tag:
        raise DerError(f"expected tag {tag:#x}, found {tlv.tag:#x}")
    return tlv


def children(content: bytes) -> Iterator[Tlv]:
    """The elements of a constructed value, in order."""
    pos = 0
    while pos < len(content):
        tlv, pos = read_tlv(content, pos)
        yield tlv


def expect(tlv: Tlv, tag: int, what: str) -> Tlv:
    if tlv.tag != tag:
        raise DerError(f"{what}: expected tag {tag:#x}, found {tlv.tag:#x}")
    return tlv


def integer(tlv: Tlv, what: str = "integer") -> int:
    """A non-negative INTEGER (zero included: AMD's VCEK serial)."""
    expect(tlv, INTEGER, what)
    if not tlv.content:
        raise DerError(f"{what}: empty integer")
    return int.from_bytes(tlv.content, "big", signed=True)


def oid(tlv: Tlv) -> str:
    """An OBJECT IDENTIFIER in dotted form."""
    expect(tlv, OID, "object identifier")
    body = tlv.content
    if not body or body[-1] & 0x80:
        raise DerError("bad object identifier")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def time_value(tlv: Tlv) -> int:
    """A UTCTime or GeneralizedTime (``...Z``) as unix seconds."""
    try:
        text = tlv.content.decode("ascii")
    except UnicodeDecodeError:
        raise DerError("time is not ASCII") from None
    if tlv.tag == UTC_TIME:
        fmt = "%y%m%d%H%M%SZ"
    elif tlv.tag == GENERALIZED_TIME:
        fmt = "%Y%m%d%H%M%SZ"
    else:
        raise DerError(f"expected a time, found tag {tlv.tag:#x}")
    try:
        parsed = datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise DerError(f"bad time {text!r}") from None
    return int(parsed.timestamp())


# -- writing ------------------------------------------------------------------


def encode(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def encode_int(value: int) -> bytes:
    return encode(INTEGER, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))


def encode_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray()
    for part in [40 * parts[0] + parts[1], *parts[2:]]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return encode(OID, bytes(out))


def encode_seq(*items: bytes) -> bytes:
    return encode(SEQUENCE, b"".join(items))


def encode_time(ts: int) -> bytes:
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    if 1950 <= moment.year < 2050:
        return encode(UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())
    return encode(GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())
