"""What a node says about itself, and the 64 bytes that bind it to evidence.

The claims are signed indirectly: their SHA-512 (:func:`report_data`) is the
report data that a TEE quote commits to, so a verifier that checks the quote
and recomputes the hash knows the claims came from inside the measured image.
For that the encoding must be canonical: one set of claims, one byte string,
on every run and every machine. We therefore encode a fixed-order msgpack
array (never a map, whose key order is an implementation detail) prefixed by
a domain tag, and refuse on decode anything that does not re-encode to the
exact same bytes.

Optional trailing fields (added after version 1 was deployed) follow one
rule: an optional field is appended to the array only when it is not empty,
so claims that do not use it keep exactly the bytes (and report data) they
had before the field existed, and an explicit empty value is refused as non
canonical. Today these are ``gpu_evidence`` (10th element) and ``region``
(11th; a claim with a region but no GPU evidence carries an empty 10th
element, the only empty value allowed, since the array is positional). A decoder that
predates a field ignores the extra element, then fails the re-encoding check
and refuses the claims: it fails closed rather than dropping a binding.
"""

from __future__ import annotations

import hashlib

import msgspec

from cocoon.tee.errors import EvidenceError

ROLES: frozenset[str] = frozenset({"client", "proxy", "worker"})
"""The roles a node can claim."""

ED25519_PUBLIC_KEY_LEN = 32
REPORT_DATA_LEN = 64

# Bump (and keep decoding the old tag) if the field list ever changes; the tag
# also keeps these bytes from being confused with any other hashed structure.
_CLAIMS_DOMAIN = "cocoon-claims-v1"


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    """A node's statement about itself, bound into its attestation evidence."""

    role: str
    """"client", "proxy" or "worker"."""
    network: str
    """Name of the network the node belongs to (a node of another network is refused)."""
    tls_public_key: bytes
    """Raw 32-byte Ed25519 public key of the node's TLS certificate."""
    hpke_suite: str = ""
    """HPKE suite name of ``hpke_public_key``; empty when the node has none."""
    hpke_public_key: bytes = b""
    """Public key that end-to-end sealed requests are encrypted to (workers)."""
    models: list[str] = msgspec.field(default_factory=list)
    """Model ids (``name@sha256:<root>``) the node serves."""
    version: str
    """Software version of the node."""
    issued_at: int
    """Unix seconds when the claims were made."""
    gpu_evidence: str = ""
    """Digest of the GPU attestation that passed on this node, ``<source>:sha256:<hex>``
    (see :mod:`cocoon.tee.gpu`); empty: no GPU evidence."""
    region: str = ""
    """Where the node's operator says it runs (an ISO 3166 code such as "DE"),
    for the `region` trust tier; empty: no claim."""


class _CanonicalClaims(msgspec.Struct, array_like=True, frozen=True):
    """Wire form of :class:`Claims`: a positional array, order fixed here."""

    domain: str
    role: str
    network: str
    tls_public_key: bytes
    hpke_suite: str
    hpke_public_key: bytes
    models: list[str]
    version: str
    issued_at: int


class _CanonicalClaimsGpu(_CanonicalClaims, array_like=True, frozen=True):
    """Wire form with GPU evidence: the same array and one more element."""

    gpu_evidence: str


class _CanonicalClaimsRegion(_CanonicalClaimsGpu, array_like=True, frozen=True):
    """Wire form with a region: one more element after GPU evidence (maybe empty)."""

    region: str


class _CanonicalClaimsIn(_CanonicalClaims, array_like=True, frozen=True):
    """What the decoder accepts: 9 elements, 10 with GPU evidence, 11 with a region."""

    gpu_evidence: str = ""
    region: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_CanonicalClaimsIn)


def canonical_bytes(claims: Claims) -> bytes:
    """The deterministic msgpack encoding of ``claims`` (what is hashed)."""
    wire = _CanonicalClaims(
        domain=_CLAIMS_DOMAIN,
        role=claims.role,
        network=claims.network,
        tls_public_key=claims.tls_public_key,
        hpke_suite=claims.hpke_suite,
        hpke_public_key=claims.hpke_public_key,
        models=list(claims.models),
        version=claims.version,
        issued_at=claims.issued_at,
    )
    # Optional trailing fields only when set (module doc): old bytes stay old.
    if claims.region:
        wire = _CanonicalClaimsRegion(
            **msgspec.structs.asdict(wire), gpu_evidence=claims.gpu_evidence, region=claims.region
        )
    elif claims.gpu_evidence:
        wire = _CanonicalClaimsGpu(**msgspec.structs.asdict(wire), gpu_evidence=claims.gpu_evidence)
    return _encoder.encode(wire)


def report_data(claims: Claims) -> bytes:
    """SHA-512 of :func:`canonical_bytes` — the 64 bytes a quote commits to."""
    return hashlib.sha512(canonical_bytes(claims)).digest()


def claims_from_canonical_bytes(data: bytes) -> Claims:
    """Decode claims received from a peer; raise EvidenceError("malformed") if not canonical.

    Besides the schema, this checks the role and the key length, and that the
    bytes are exactly what :func:`canonical_bytes` would produce, so that two
    different byte strings can never carry the same claims.
    """
    try:
        wire = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvidenceError("malformed", f"claims do not decode: {exc}") from None
    if wire.domain != _CLAIMS_DOMAIN:
        raise EvidenceError("malformed", f"unknown claims format {wire.domain!r}")
    if wire.role not in ROLES:
        raise EvidenceError("malformed", f"unknown role {wire.role!r}")
    if len(wire.tls_public_key) != ED25519_PUBLIC_KEY_LEN:
        raise EvidenceError("malformed", "tls_public_key is not a 32-byte Ed25519 key")
    claims = Claims(
        role=wire.role,
        network=wire.network,
        tls_public_key=wire.tls_public_key,
        hpke_suite=wire.hpke_suite,
        hpke_public_key=wire.hpke_public_key,
        models=wire.models,
        version=wire.version,
        issued_at=wire.issued_at,
        gpu_evidence=wire.gpu_evidence,
        region=wire.region,
    )
    if canonical_bytes(claims) != data:
        raise EvidenceError("malformed", "claims are not canonically encoded")
    return claims
