"""Verdicts: what a verifier worker signs when it judges a failed audit.

A quorum of verifiers listed on the root (``root.tolk``) signs the same verdict; anyone
submits the signatures to the root, which checks them and proposes the slash to the
worker's stake (DESIGN.md §11). The signed form is one cell, checked on chain:

    tag:uint32 = 0x76726474 ("vrdt")
    networkId:int32      -- the chain network id the root holds (RootConfig.network_id)
    stake:address        -- the worker's stake contract (addr_std, 267 bits)
    workerKey:uint256    -- the worker's node key (the stake checks it is its own)
    evidence:uint256     -- hash of what was judged (the sealed audit report)
    slashBp:uint16       -- basis points of the stake to slash, 1..10000
    nonce:uint64         -- microseconds since the epoch (at most an hour ahead of the
                            chain's clock); the stake accepts each once, rising

923 bits, no refs; the verifier signs its representation hash with its Ed25519 node
key. Off chain a signature travels as a msgpack :class:`SignedVerdict` (the verdict's
fields, the verifier's key and the signature), so a client can collect them from
several verifiers and submit them together (``cocoon.chain.slashing.submit_verdicts``).

The hash is computed by hand (as for receipt cells) so this layer does not depend on
the chain library; ``tests/crypto/test_verdict_cell.py`` checks it against pytoniq.
"""

from __future__ import annotations

import hashlib
import re

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import CryptoError
from .signing import ed25519_sign, ed25519_verify

__all__ = [
    "VERDICT_TAG",
    "SignedVerdict",
    "Verdict",
    "VerdictError",
    "decode_signed_verdict",
    "sign_verdict",
    "verdict_cell_bits",
    "verdict_cell_hash",
]

VERDICT_TAG = 0x76726474  # "vrdt"
_BITS = 32 + 32 + 267 + 256 + 256 + 16 + 64  # 923
_RAW = re.compile(r"(-?\d+):([0-9a-fA-F]{64})")


class VerdictError(CryptoError):
    """A verdict or its signature is malformed or does not verify."""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """What the verifiers agree on: slash ``slash_bp`` of the stake at ``stake`` (whose
    node key is ``worker_key``) for the evidence hashed to ``evidence_hash``."""

    network_id: int  # int32, the root's
    stake: str  # raw address "0:<64 hex>"
    worker_key: bytes  # 32 bytes
    evidence_hash: bytes  # 32 bytes
    slash_bp: int  # 1..10000
    nonce: int  # uint64


class SignedVerdict(msgspec.Struct, frozen=True):
    """One verifier's signature of a verdict's cell hash."""

    verdict: Verdict
    verifier_key: bytes  # 32-byte Ed25519 node key, listed on the root
    signature: bytes  # 64 bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SignedVerdict)


def _check(v: Verdict) -> tuple[int, bytes]:
    m = _RAW.fullmatch(v.stake)
    if m is None:
        raise VerdictError(f"stake address {v.stake!r}: expected a raw address wc:<64 hex>")
    workchain = int(m.group(1))
    if not -128 <= workchain <= 127:
        raise VerdictError(f"workchain {workchain} does not fit int8")
    if not -(2**31) <= v.network_id < 2**31:
        raise VerdictError(f"network id {v.network_id} is not an int32")
    if len(v.worker_key) != 32 or len(v.evidence_hash) != 32:
        raise VerdictError("worker key and evidence hash are 32 bytes each")
    if not 1 <= v.slash_bp <= 10_000:
        raise VerdictError(f"slash of {v.slash_bp} bp: expected 1..10000")
    if not 0 <= v.nonce < 2**64:
        raise VerdictError(f"nonce {v.nonce} does not fit uint64")
    return workchain, bytes.fromhex(m.group(2))


def verdict_cell_bits(v: Verdict) -> int:
    """The verdict cell's 923 data bits as one integer (most significant bit first)."""
    workchain, account = _check(v)
    x = VERDICT_TAG
    x = (x << 32) | (v.network_id & 0xFFFFFFFF)
    x = (x << 3) | 0b100  # addr_std$10, no anycast
    x = (x << 8) | (workchain & 0xFF)
    x = (x << 256) | int.from_bytes(account, "big")
    x = (x << 256) | int.from_bytes(v.worker_key, "big")
    x = (x << 256) | int.from_bytes(v.evidence_hash, "big")
    x = (x << 16) | v.slash_bp
    return (x << 64) | v.nonce


def verdict_cell_hash(v: Verdict) -> bytes:
    """The representation hash of the verdict cell: what each verifier signs."""
    # An ordinary cell without refs: d1 = 0, d2 = ceil(b/8) + floor(b/8), then the data
    # with a completion bit (a 1 and zeros up to the byte) since 923 is not a multiple of 8.
    padded = (verdict_cell_bits(v) << 5) | 0b10000
    data = padded.to_bytes((_BITS + 7) // 8, "big")
    d2 = (_BITS + 7) // 8 + _BITS // 8
    return hashlib.sha256(bytes((0, d2)) + data).digest()


def sign_verdict(
    key: Ed25519PrivateKey,
    network_id: int,
    worker_key: bytes,
    stake_address: str,
    evidence_hash: bytes,
    slash_bp: int,
    nonce: int,
) -> bytes:
    """A verifier's signed verdict (msgpack :class:`SignedVerdict`): slash ``slash_bp``
    basis points of the stake at ``stake_address`` (raw ``wc:<hex>``) of the worker
    with node key ``worker_key``, for the evidence hashed to ``evidence_hash``, on the
    chain network ``network_id``. Verdicts about one stake need rising nonces: use the
    time in microseconds (``time.time_ns() // 1000``); the root refuses one more than an
    hour ahead of its clock, since a stake refuses every verdict below its highest."""
    v = Verdict(
        network_id=network_id,
        stake=stake_address.lower(),
        worker_key=worker_key,
        evidence_hash=evidence_hash,
        slash_bp=slash_bp,
        nonce=nonce,
    )
    signature = ed25519_sign(key, verdict_cell_hash(v))
    public = key.public_key().public_bytes_raw()
    return _encoder.encode(SignedVerdict(v, public, signature))


def decode_signed_verdict(data: bytes) -> SignedVerdict:
    """Decode a signed verdict and check its signature; VerdictError on any fault."""
    try:
        sv = _decoder.decode(data)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise VerdictError(f"malformed signed verdict: {exc}") from exc
    if not ed25519_verify(sv.verifier_key, sv.signature, verdict_cell_hash(sv.verdict)):
        raise VerdictError(f"bad verdict signature by {sv.verifier_key.hex()}")
    return sv
