"""Answer chunks sealed under the client's response key, in order, with a final flag."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import StreamError
from .framing import length_prefixed

RESPONSE_KEY_LEN = 32
STREAM_DOMAIN = b"cocoon/answer/v1"
TAG_DOMAIN = b"cocoon/receipt-tag/v1"
# The stream key is unique per (response key, request id), so a fixed prefix and
# a counter never repeat a nonce under one key.
_NONCE_PREFIX = bytes(4)
_MORE = b"\x00"
_FINAL = b"\x01"


class _Stream:
    """State shared by both ends: the AEAD, the AAD prefix, the index and the digest."""

    __slots__ = ("_aad_prefix", "_aead", "_finished", "_hash", "_index", "_tag_key")

    def __init__(self, response_key: bytes, request_id: str) -> None:
        if len(response_key) != RESPONSE_KEY_LEN:
            raise StreamError("response key must be 32 bytes")
        # Derived per request: a client that reused a response key across requests
        # still never reuses a (key, nonce) pair.
        stream_key = hmac.digest(
            response_key, length_prefixed(STREAM_DOMAIN, request_id.encode()), "sha256"
        )
        self._aead = ChaCha20Poly1305(stream_key)
        self._tag_key = hmac.digest(
            response_key, length_prefixed(TAG_DOMAIN, request_id.encode()), "sha256"
        )
        self._aad_prefix = length_prefixed(STREAM_DOMAIN, request_id.encode())
        self._hash = hashlib.sha256()
        self._index = 0
        self._finished = False

    @property
    def index(self) -> int:
        """Index of the next chunk."""
        return self._index

    @property
    def finished(self) -> bool:
        """Whether the final chunk has been sealed or accepted."""
        return self._finished

    def _nonce_and_aad(self, final: bool) -> tuple[bytes, bytes]:
        counter = self._index.to_bytes(8, "big")
        # The index sits in the nonce and the AAD; the flag in the AAD, so a
        # chunk sealed as "more" cannot be presented as the final one.
        return _NONCE_PREFIX + counter, self._aad_prefix + counter + (_FINAL if final else _MORE)

    def _accept(self, sealed: bytes, final: bool) -> None:
        self._hash.update(len(sealed).to_bytes(4, "big"))
        self._hash.update(sealed)
        self._index += 1
        self._finished = final

    def receipt_tag(self, receipt: bytes) -> bytes:
        """A MAC over a signed receipt's bytes under a key only the two ends hold.

        The client checks it instead of the signature (2 µs against 53): it
        proves that the worker that opened this very request made the receipt,
        which is what the signature proves to the client, and the proxy, which
        bills from the receipt, still checks the signature.
        """
        return hmac.digest(self._tag_key, receipt, "sha256")

    def digest(self) -> bytes:
        """SHA-256 over each accepted sealed chunk, length-prefixed, in order."""
        return self._hash.copy().digest()


class AnswerSealer(_Stream):
    """Worker side: seals answer chunks in order, the last one flagged final."""

    __slots__ = ()

    def seal(self, plaintext: bytes, *, final: bool) -> bytes:
        """Seal the next chunk; StreamError once the final chunk was sealed."""
        if self._finished:
            raise StreamError("answer already finished")
        nonce, aad = self._nonce_and_aad(final)
        sealed = self._aead.encrypt(nonce, plaintext, aad)
        self._accept(sealed, final)
        return sealed


class AnswerOpener(_Stream):
    """Client side: opens chunks strictly in order and notices a missing final chunk."""

    __slots__ = ()

    def open(self, index: int, sealed: bytes, *, final: bool) -> bytes:
        """Open chunk `index`; StreamError if out of order, tampered, or after final."""
        if self._finished:
            raise StreamError("chunk after the final one")
        if index != self._index:
            raise StreamError(f"chunk {index} out of order: expected {self._index}")
        nonce, aad = self._nonce_and_aad(final)
        try:
            plaintext = self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise StreamError(f"chunk {index} failed authentication") from None
        self._accept(sealed, final)
        return plaintext

    def finish(self) -> None:
        """Check that the stream ended with its final chunk; StreamError otherwise."""
        if not self._finished:
            raise StreamError("answer truncated")
