"""Seal a request to k candidate workers: one content key, wrapped for each.

A client keeps one *seal session* per worker: a random 32-byte secret sealed
once, by HPKE to the worker's attested key (ML-KEM-768 + X25519 by default),
into the session's `opening`. Each wrap carries that opening and the content
key under a key derived from the session secret, bound to the network, the
request id and the worker. A worker decapsulates an opening the first time it
sees it and keeps the derived key, by the opening's hash, in a bounded map;
an opening it has dropped (or never saw, after a restart) it simply opens
again, so no request depends on what a worker remembers.

Why sessions: an HPKE encapsulation costs the client about 110 µs per
candidate and a decapsulation the worker about 90 µs; with k candidates that
was half the client's CPU per request and a fifth of the worker's. A session
turns both into one ChaCha20-Poly1305 call of about 2 µs. The envelope keeps
the size it had with one encapsulation per wrap. What the proxy sees does not
change: it already knows which connection sent each request, so a repeated
opening links nothing it could not link before, and without the worker's HPKE
private key it cannot learn a session secret. A session ends after
`SESSION_MAX_USES` requests or `SESSION_MAX_AGE_S` seconds, whichever comes
first: that bounds what one leaked secret exposes, and keeps random 96-bit
nonces far from colliding.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import SealError
from .framing import length_prefixed
from .hpke_keys import HpkeKeyPair, hpke_suite, load_public_key

ENVELOPE_VERSION = 2
SESSION_DOMAIN = b"cocoon/seal-session/v1"
WRAP_KEY_DOMAIN = b"cocoon/seal-wrap-key/v1"
WRAP_DOMAIN = b"cocoon/seal-wrap/v1"
BODY_DOMAIN = b"cocoon/seal-body/v2"
CONTENT_KEY_LEN = 32
SESSION_SECRET_LEN = 32
NONCE_LEN = 12
WRAPPED_LEN = NONCE_LEN + CONTENT_KEY_LEN + 16

SESSION_MAX_USES = 1 << 20
SESSION_MAX_AGE_S = 3600.0
# Sessions a worker keeps opened at most; the least recently used goes first.
SESSION_CAPACITY = 65536


class Recipient(msgspec.Struct, frozen=True):
    """A candidate worker: its key id, HPKE suite name and raw HPKE public key."""

    key_id: str
    suite: str
    public_key: bytes


class KeyWrap(msgspec.Struct, frozen=True, array_like=True):
    """The content key for one recipient, under its seal session's wrap key."""

    key_id: str
    opening: bytes  # HPKE (enc || ciphertext) of the session secret
    wrapped: bytes  # nonce || ChaCha20-Poly1305(wrap key, content key)


class SealedEnvelope(msgspec.Struct, frozen=True):
    """A request body under one content key, with that key wrapped for each candidate."""

    version: int
    request_id: str
    wraps: list[KeyWrap]
    nonce: bytes
    ciphertext: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SealedEnvelope)


def _opening_info(network: str) -> bytes:
    return length_prefixed(SESSION_DOMAIN, network.encode())


def _wrap_aead(secret: bytes, network: str) -> ChaCha20Poly1305:
    info = length_prefixed(WRAP_KEY_DOMAIN, network.encode())
    return ChaCha20Poly1305(hmac.digest(secret, info, "sha256"))


def _wrap_aad(network: str, request_id: str, key_id: str) -> bytes:
    # Binding network and request id into every wrap stops a proxy from moving a
    # wrapped key to another request or another network.
    return length_prefixed(WRAP_DOMAIN, network.encode(), request_id.encode(), key_id.encode())


def _body_aad(network: str, request_id: str, wraps: Sequence[KeyWrap]) -> bytes:
    # The body also authenticates every wrap, so that a worker notices any change
    # to the candidate set or to another candidate's wrap, not only to its own.
    fields = [field for w in wraps for field in (w.key_id.encode(), w.opening, w.wrapped)]
    return length_prefixed(BODY_DOMAIN, network.encode(), request_id.encode(), *fields)


@dataclass
class _Session:
    recipient: Recipient
    opening: bytes
    aead: ChaCha20Poly1305
    expires: float
    uses_left: int


class SealSessions:
    """The client's seal sessions, one per worker (sans-IO; `clock` is injectable)."""

    def __init__(
        self,
        network: str,
        *,
        max_uses: int = SESSION_MAX_USES,
        max_age_s: float = SESSION_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.network = network
        self.max_uses = max_uses
        self.max_age_s = max_age_s
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self.opened = 0  # sessions opened so far (HPKE encapsulations)

    def __len__(self) -> int:
        return len(self._sessions)

    def _current(self, recipient: Recipient) -> _Session:
        session = self._sessions.get(recipient.key_id)
        now = self._clock()
        if (
            session is None
            or session.recipient != recipient
            or session.uses_left <= 0
            or now >= session.expires
        ):
            secret = os.urandom(SESSION_SECRET_LEN)
            opening = hpke_suite(recipient.suite).encrypt(
                secret,
                load_public_key(recipient.suite, recipient.public_key),
                _opening_info(self.network),
            )
            session = _Session(
                recipient,
                opening,
                _wrap_aead(secret, self.network),
                now + self.max_age_s,
                self.max_uses,
            )
            self._sessions[recipient.key_id] = session
            self.opened += 1
        return session

    def wrap(self, recipient: Recipient, content_key: bytes, request_id: str) -> KeyWrap:
        """Wrap `content_key` for `recipient`, opening a session first if needed."""
        session = self._current(recipient)
        session.uses_left -= 1
        nonce = os.urandom(NONCE_LEN)
        aad = _wrap_aad(self.network, request_id, recipient.key_id)
        return KeyWrap(
            recipient.key_id, session.opening, nonce + session.aead.encrypt(nonce, content_key, aad)
        )

    def opening(self, key_id: str) -> bytes:
        """The opening of this worker's current session (b"" if none)."""
        session = self._sessions.get(key_id)
        return b"" if session is None else session.opening

    def retain(self, key_ids: Collection[str]) -> None:
        """Keep only the sessions of these workers (the rest left the directory)."""
        for key_id in [k for k in self._sessions if k not in key_ids]:
            del self._sessions[key_id]


class OpenSessions:
    """A worker's opened seal sessions, by the hash of their opening; bounded, least
    recently used out."""

    def __init__(
        self,
        keypair: HpkeKeyPair,
        network: str,
        *,
        capacity: int = SESSION_CAPACITY,
        max_age_s: float = SESSION_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keypair = keypair
        self.network = network
        self.capacity = capacity
        # Kept no longer than a client uses a session, so that a leaked worker
        # memory holds at most the last hour's session keys.
        self.max_age_s = max_age_s
        self._clock = clock
        self._sessions: OrderedDict[bytes, tuple[ChaCha20Poly1305, float]] = OrderedDict()
        self.opened = 0  # openings decapsulated so far

    def __len__(self) -> int:
        return len(self._sessions)

    def _aead(self, opening: bytes) -> ChaCha20Poly1305:
        # The whole opening names the session: a proxy that relabels or forges
        # one gets a session of its own, never a say over someone else's.
        name = hashlib.sha256(opening).digest()
        now = self._clock()
        held = self._sessions.get(name)
        if held is not None and now < held[1]:
            self._sessions.move_to_end(name)
            return held[0]
        suite = hpke_suite(self.keypair.suite)
        secret = suite.decrypt(opening, self.keypair.private_key, _opening_info(self.network))
        if len(secret) != SESSION_SECRET_LEN:
            raise SealError("malformed session secret")
        aead = _wrap_aead(secret, self.network)
        self._sessions[name] = (aead, now + self.max_age_s)
        self._sessions.move_to_end(name)
        self.opened += 1
        while len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)
        return aead

    def content_key(self, wrap: KeyWrap, request_id: str) -> bytes:
        """The content key of `wrap`; SealError if it cannot be had."""
        if len(wrap.wrapped) != WRAPPED_LEN:
            raise SealError("malformed wrap")
        try:
            aead = self._aead(wrap.opening)
            aad = _wrap_aad(self.network, request_id, wrap.key_id)
            return aead.decrypt(wrap.wrapped[:NONCE_LEN], wrap.wrapped[NONCE_LEN:], aad)
        except (InvalidTag, ValueError) as exc:
            raise SealError("wrap cannot be opened: tampered or not for us") from exc


def seal_request(
    plaintext: bytes,
    recipients: Sequence[Recipient],
    request_id: str,
    network: str,
    sessions: SealSessions | None = None,
    content_key: bytes | None = None,
) -> bytes:
    """Seal `plaintext` so that any one of `recipients` can open it; returns msgpack.

    Without `sessions`, each recipient gets a session of its own for this one
    request (an HPKE encapsulation each, as a client that sends one request).
    `content_key` (fresh and random per request) is the client's to keep: with it
    anyone opens this one envelope (`open_disclosed`), as audit evidence does.
    """
    if not recipients:
        raise SealError("no recipients")
    if sessions is None:
        sessions = SealSessions(network)
    elif sessions.network != network:
        raise SealError("seal sessions are for another network")
    if content_key is None:
        content_key = ChaCha20Poly1305.generate_key()
    elif len(content_key) != CONTENT_KEY_LEN:
        raise SealError("a content key is 32 bytes")
    wraps = [sessions.wrap(r, content_key, request_id) for r in recipients]
    nonce = os.urandom(NONCE_LEN)
    ciphertext = ChaCha20Poly1305(content_key).encrypt(
        nonce, plaintext, _body_aad(network, request_id, wraps)
    )
    return _encoder.encode(SealedEnvelope(ENVELOPE_VERSION, request_id, wraps, nonce, ciphertext))


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
    envelope: bytes,
    key_id: str,
    keys: HpkeKeyPair | OpenSessions,
    request_id: str,
    network: str,
) -> bytes:
    """Open an envelope addressed to `key_id`; SealError on any mismatch or tampering.

    A worker passes its `OpenSessions`, so that each session is decapsulated
    once; a bare key pair decapsulates every time.
    """
    sessions = keys if isinstance(keys, OpenSessions) else OpenSessions(keys, network)
    if sessions.network != network:
        raise SealError("seal sessions are for another network")
    sealed = decode_envelope(envelope)
    if sealed.request_id != request_id:
        raise SealError("envelope is for another request")
    wrap = next((w for w in sealed.wraps if w.key_id == key_id), None)
    if wrap is None:
        raise SealError(f"envelope is not addressed to {key_id}")
    content_key = sessions.content_key(wrap, request_id)
    if len(content_key) != CONTENT_KEY_LEN or len(sealed.nonce) != NONCE_LEN:
        raise SealError("malformed envelope")
    try:
        return ChaCha20Poly1305(content_key).decrypt(
            sealed.nonce, sealed.ciphertext, _body_aad(network, request_id, sealed.wraps)
        )
    except (InvalidTag, ValueError) as exc:
        raise SealError("envelope cannot be opened: tampered or not for us") from exc


def open_disclosed(envelope: bytes, content_key: bytes, network: str) -> tuple[str, bytes]:
    """Open an envelope whose content key its sender disclosed (one request's, never a
    session's): its request id and plaintext; SealError if the key does not open it."""
    sealed = decode_envelope(envelope)
    if len(content_key) != CONTENT_KEY_LEN or len(sealed.nonce) != NONCE_LEN:
        raise SealError("malformed envelope or content key")
    try:
        plaintext = ChaCha20Poly1305(content_key).decrypt(
            sealed.nonce,
            sealed.ciphertext,
            _body_aad(network, sealed.request_id, sealed.wraps),
        )
    except (InvalidTag, ValueError) as exc:
        raise SealError("the disclosed key does not open this envelope") from exc
    return sealed.request_id, plaintext


def envelope_recipients(envelope: bytes) -> list[str]:
    """List the key ids an envelope is addressed to (for routing); SealError on garbage."""
    return [w.key_id for w in decode_envelope(envelope).wraps]
