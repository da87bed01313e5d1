"""Seal a request to k candidate workers with one content key, each wrap by HPKE."""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import SealError
from .framing import length_prefixed
from .hpke_keys import HpkeKeyPair, hpke_suite, load_public_key

ENVELOPE_VERSION = 1
SEAL_DOMAIN = b"cocoon/seal/v1"
BODY_DOMAIN = b"cocoon/seal-body/v1"
CONTENT_KEY_LEN = 32
NONCE_LEN = 12


class Recipient(msgspec.Struct, frozen=True):
    """A candidate worker: its key id, HPKE suite name and raw HPKE public key."""

    key_id: str
    suite: str
    public_key: bytes


class KeyWrap(msgspec.Struct, frozen=True, array_like=True):
    """The content key sealed by HPKE to one recipient (`enc_wrap` = enc || ciphertext)."""

    key_id: str
    enc_wrap: bytes


class SealedEnvelope(msgspec.Struct, frozen=True):
    """A request body under one content key, with that key wrapped for each candidate."""

    version: int
    request_id: str
    wraps: list[KeyWrap]
    nonce: bytes
    ciphertext: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SealedEnvelope)


def _wrap_info(network: str, request_id: str) -> bytes:
    # Binding network and request id into every wrap stops a proxy from moving a
    # wrapped key to another request or another network.
    return length_prefixed(SEAL_DOMAIN, network.encode(), request_id.encode())


def _body_aad(network: str, request_id: str, wraps: Sequence[KeyWrap]) -> bytes:
    # The body also authenticates every wrap, so that a worker notices any change
    # to the candidate set or to another candidate's wrap, not only to its own.
    wrap_fields = [field for w in wraps for field in (w.key_id.encode(), w.enc_wrap)]
    return length_prefixed(BODY_DOMAIN, network.encode(), request_id.encode(), *wrap_fields)


def seal_request(
    plaintext: bytes, recipients: Sequence[Recipient], request_id: str, network: str
) -> bytes:
    """Seal `plaintext` so that any one of `recipients` can open it; returns msgpack."""
    if not recipients:
        raise SealError("no recipients")
    content_key = ChaCha20Poly1305.generate_key()
    info = _wrap_info(network, request_id)
    wraps = [
        KeyWrap(
            r.key_id,
            hpke_suite(r.suite).encrypt(content_key, load_public_key(r.suite, r.public_key), info),
        )
        for r in recipients
    ]
    nonce = os.urandom(NONCE_LEN)
    ciphertext = ChaCha20Poly1305(content_key).encrypt(
        nonce, plaintext, _body_aad(network, request_id, wraps)
    )
    envelope = SealedEnvelope(ENVELOPE_VERSION, request_id, wraps, nonce, ciphertext)
    return _encoder.encode(envelope)


def decode_envelope(envelope: bytes) -> SealedEnvelope:
    """Decode a sealed envelope's msgpack; SealError on garbage or unknown version."""
    # msgspec raises a bare UnicodeDecodeError (a ValueError) for bad UTF-8 strings.
    try:
        decoded = _decoder.decode(envelope)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise SealError(f"malformed envelope: {exc}") from exc
    if decoded.version != ENVELOPE_VERSION:
        raise SealError(f"unsupported envelope version {decoded.version}")
    return decoded


def open_request(
    envelope: bytes, key_id: str, keypair: HpkeKeyPair, request_id: str, network: str
) -> bytes:
    """Open an envelope addressed to `key_id`; SealError on any mismatch or tampering."""
    sealed = decode_envelope(envelope)
    if sealed.request_id != request_id:
        raise SealError("envelope is for another request")
    wrap = next((w for w in sealed.wraps if w.key_id == key_id), None)
    if wrap is None:
        raise SealError(f"envelope is not addressed to {key_id}")
    suite = hpke_suite(keypair.suite)
    try:
        content_key = suite.decrypt(
            wrap.enc_wrap, keypair.private_key, _wrap_info(network, request_id)
        )
        if len(content_key) != CONTENT_KEY_LEN or len(sealed.nonce) != NONCE_LEN:
            raise SealError("malformed envelope")
        return ChaCha20Poly1305(content_key).decrypt(
            sealed.nonce, sealed.ciphertext, _body_aad(network, request_id, sealed.wraps)
        )
    except (InvalidTag, ValueError) as exc:
        raise SealError("envelope cannot be opened: tampered or not for us") from exc


def envelope_recipients(envelope: bytes) -> list[str]:
    """List the key ids an envelope is addressed to (for routing); SealError on garbage."""
    return [w.key_id for w in decode_envelope(envelope).wraps]
