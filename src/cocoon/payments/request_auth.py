"""A client's proof, inside each request, that it sent it (issue 18: prove, not pre-record).

A payer must pay an invoice only for a request it sent through that payee, to
workers it sealed it to, within its price bound. It used to know that from a
record written, on disk, before the request left: a commit and a turn of the
event loop on the path of every request. Now the request carries a tag,
HMAC-SHA256 under a key only this client can derive (from its wallet key),
over the network, the channel, the request id, the sealed envelope's hash,
the price bound and the workers it is sealed to. The proxy keeps the tag with
its own record of the request and returns it with an invoice, and the client
recognises its own tag and pays. So the client keeps no record of a request
it tags (one only for a request moved from another proxy, or sent to a proxy
of 1.4 or before), and a kill -9 loses nothing it needs.

Only the client ever checks a tag, so a MAC serves where a signature would
cost more than the write it saves; the proxy cannot forge one, nor move one
to another request, channel, price bound or set of workers.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.framing import length_prefixed

DOMAIN = b"cocoon/request-auth/v1"
TAG_BYTES = 16
# Protocol 1.5 carries tags: a proxy of an earlier minor version drops them, and its
# clients keep their records on disk before sending, as before.
TAG_MINOR = 5


def auth_key(wallet_key: Ed25519PrivateKey) -> bytes:
    """The client's tag key: derived from its wallet key, so it survives restarts."""
    return hmac.new(wallet_key.private_bytes_raw(), DOMAIN, hashlib.sha256).digest()


def request_tag(
    key: bytes,
    *,
    network_id: int,
    channel: str,
    request_id: str,
    request_hash: bytes,
    max_coefficient_milli: int,
    signers: list[bytes] | tuple[bytes, ...],
) -> bytes:
    """The tag of one request sent on `channel`, sealed to `signers`."""
    message = length_prefixed(
        DOMAIN,
        network_id.to_bytes(8, "big", signed=True),
        channel.encode(),
        request_id.encode(),
        request_hash,
        max_coefficient_milli.to_bytes(8, "big", signed=True),
        hashlib.sha256(length_prefixed(*signers)).digest(),
    )
    return hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES]


class RequestTagger:
    """`request_tag` under one key, network and channel, with what every tag of them
    shares made once: the MAC's keyed state, the leading fields, and the hash of each
    set of workers (a client seals to the same few sets again and again). Half the
    time of `request_tag`, the same tags."""

    # Sets of workers whose hash is kept; past it the cache starts again.
    SIGNER_SETS = 1024

    def __init__(self, key: bytes, *, network_id: int, channel: str) -> None:
        self.channel = channel
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._head = length_prefixed(
            DOMAIN, network_id.to_bytes(8, "big", signed=True), channel.encode()
        )
        self._signers: dict[tuple[bytes, ...], bytes] = {}

    def tag(
        self,
        request_id: str,
        request_hash: bytes,
        max_coefficient_milli: int,
        signers: list[bytes] | tuple[bytes, ...],
    ) -> bytes:
        workers = tuple(signers)
        digest = self._signers.get(workers)
        if digest is None:
            if len(self._signers) >= self.SIGNER_SETS:
                self._signers.clear()
            digest = self._signers[workers] = hashlib.sha256(length_prefixed(*workers)).digest()
        mac = self._mac.copy()
        mac.update(
            self._head
            + length_prefixed(
                request_id.encode(),
                request_hash,
                max_coefficient_milli.to_bytes(8, "big", signed=True),
                digest,
            )
        )
        return mac.digest()[:TAG_BYTES]


def tag_matches(tag: bytes, expected: bytes) -> bool:
    return len(tag) == TAG_BYTES and hmac.compare_digest(tag, expected)
