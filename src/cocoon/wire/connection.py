"""The sans-IO Cocoon connection: handshake, heartbeats and request frames.

A `Connection` is fed bytes (`receive_data`) and hands back events; it turns
messages into bytes (`send`). It never touches a socket or reads the clock:
every call that can expire something takes `now` (unix seconds).

Handshake (DESIGN §4). TLS 1.3 has already run; the connector saw the
acceptor's RA-TLS certificate, the acceptor saw no certificate (Python's ssl
cannot accept an arbitrary self-signed client certificate). So:

    connector                              acceptor
      Hello(version, role, nonce_c, cert) ->
                                         <- HelloAck(version, role, nonce_s)
      AuthProof(sig over H(acceptor cert), nonce_s, nonce_c) ->
                                         <- AuthOk

The proof binds the connector's key to this very TLS channel: a relay that
terminates TLS itself presents a different certificate, so the signature would
not verify at the real acceptor. Both sides check the peer's certificate and
evidence against their policy before anything else flows.
"""

from __future__ import annotations

import hashlib
import os

from ..crypto.errors import SignatureError
from ..crypto.signing import DOMAIN_AUTH, sign, verify
from ..tee.certs import PeerCertificate
from ..tee.evidence import Verdict
from ..tee.policy import PeerPolicy
from .errors import (
    AuthenticationError,
    LocalProtocolError,
    PeerError,
    ProtocolError,
    RemoteProtocolError,
)
from .framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from .handshake import (
    HANDSHAKE_MAX_FRAME,
    NONCE_BYTES,
    Event,
    LocalIdentity,
    PeerRenewed,
    Ready,
    State,
    check_peer,
    check_version,
    proof_message,
    short_reason,
)
from .messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    AnswerEnd,
    AnswerPart,
    AuthOk,
    AuthProof,
    Cancel,
    Error,
    Hello,
    HelloAck,
    Message,
    Ping,
    Pong,
    Renew,
    Request,
)
from .streams import StreamTable


class Connection:
    """One end of a Cocoon connection, without I/O."""

    def __init__(
        self,
        *,
        connector: bool,
        local: LocalIdentity,
        policy: PeerPolicy,
        accept_roles: frozenset[str],
        now: float,
        peer_tls_certificate: bytes | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 30.0,
        nonce: bytes | None = None,
    ) -> None:
        if connector and peer_tls_certificate is None:
            raise LocalProtocolError("a connector needs the certificate TLS presented")
        self.connector = connector
        self.local = local
        self.policy = policy
        self.accept_roles = accept_roles
        self.max_frame = max_frame
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.state = State.START if connector else State.AWAIT_HELLO
        self.streams = StreamTable()
        self.peer: PeerCertificate | None = None
        self.verdict: Verdict | None = None
        self._peer_tls_certificate = peer_tls_certificate
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        self._peer_nonce = b""
        self._peer_minor = 0
        # The acceptor is the side strangers reach: it buffers little until they
        # prove themselves. (A connector chose whom to reach; its peer's frames
        # after AuthOk may arrive in the same read as AuthOk, so its limit is
        # the connection's from the start.)
        self._decoder = FrameDecoder(
            max_frame if connector else min(max_frame, HANDSHAKE_MAX_FRAME)
        )
        self._outbox = bytearray()
        self._last_received = now
        self._last_sent = now
        self._ping_seq = 0
        self._ping_outstanding = False

    # -- outgoing ------------------------------------------------------------

    def initiate(self, now: float) -> None:
        """Connector only: queue the Hello that opens the handshake."""
        if not self.connector or self.state is not State.START:
            raise LocalProtocolError("initiate() is for a fresh connector")
        self._queue(
            Hello(
                PROTOCOL_MAJOR,
                PROTOCOL_MINOR,
                self.local.role,
                self.local.network,
                self._nonce,
                self.local.certificate,
            ),
            now,
        )
        self.state = State.AWAIT_HELLO_ACK

    def send(self, message: Message, now: float) -> bytes:
        """Encode an application message; empty bytes mean it was dropped (cancelled request)."""
        if self.state is not State.READY:
            raise LocalProtocolError(f"cannot send {type(message).__name__} in state {self.state}")
        # Encode first: a frame that cannot be sent must not change any state.
        data = encode_frame(message, self.max_frame)
        streams = self.streams
        if isinstance(message, AnswerPart):
            if not streams.send_part(message.request_id, message.index):
                return b""
        elif isinstance(message, AnswerEnd):
            if not streams.send_end(message.request_id, message.index):
                return b""
        elif isinstance(message, Request):
            streams.send_request(message.request_id)
        elif isinstance(message, Error):
            if message.request_id and not streams.send_end(message.request_id):
                return b""
        elif isinstance(message, Cancel) and not streams.send_cancel(message.request_id):
            return b""
        self._last_sent = now
        return data

    def fail(self, error: ProtocolError, request_id: str = "") -> bytes:
        """Bytes of the Error frame that tells the peer why we close; closes the connection."""
        self.state = State.CLOSED
        return encode_frame(
            Error(request_id, error.code, short_reason(error), False), self.max_frame
        )

    def data_to_send(self) -> bytes:
        """Handshake and heartbeat bytes the connection itself wants sent."""
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    # -- incoming ------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed received bytes; return the events they complete.

        Raises a ProtocolError subclass when the peer broke the protocol (an
        Error frame explaining it is then waiting in `data_to_send`), or
        PeerError when the peer closed the connection with an Error frame.
        """
        if self.state is State.CLOSED:
            return []
        self._last_received = now
        self._ping_outstanding = False
        try:
            messages = self._decoder.feed(data)
            if self.state is State.READY:
                return self._receive_ready(messages, now)
            events: list[Event] = []
            for index, message in enumerate(messages):
                if self._is_ready():
                    events.extend(self._receive_ready(messages[index:], now))
                    break
                ready = self._receive_handshake(message, now)
                if ready is not None:
                    events.append(ready)
            return events
        except ProtocolError as error:
            self._outbox += self.fail(error)
            raise

    def _receive_ready(self, messages: list[Message], now: float) -> list[Event]:
        events: list[Event] = []
        streams = self.streams
        for message in messages:
            if isinstance(message, AnswerPart):
                if streams.receive_part(message.request_id, message.index):
                    events.append(message)
            elif isinstance(message, AnswerEnd):
                if streams.receive_end(message.request_id, message.index):
                    events.append(message)
            elif isinstance(message, Request):
                streams.receive_request(message.request_id)
                events.append(message)
            elif isinstance(message, Error):
                if not message.request_id:
                    self.state = State.CLOSED
                    raise PeerError(message.code, message.message, message.retryable)
                if streams.receive_end(message.request_id):
                    events.append(message)
            elif isinstance(message, Cancel):
                if streams.receive_cancel(message.request_id):
                    events.append(message)
            elif isinstance(message, Ping):
                self._queue(Pong(message.seq), now)
            elif isinstance(message, Pong):
                pass
            elif isinstance(message, Renew):
                events.append(self._on_renew(message, now))
            elif isinstance(message, Hello | HelloAck | AuthProof | AuthOk):
                raise RemoteProtocolError(f"unexpected {type(message).__name__} after handshake")
            else:
                events.append(message)
        return events

    def _receive_handshake(self, message: Message, now: float) -> Ready | None:
        if isinstance(message, Error):
            self.state = State.CLOSED
            raise PeerError(message.code, message.message, message.retryable)
        if self.state is State.AWAIT_HELLO and isinstance(message, Hello):
            self._on_hello(message, now)
            return None
        if self.state is State.AWAIT_HELLO_ACK and isinstance(message, HelloAck):
            self._on_hello_ack(message, now)
            return None
        if self.state is State.AWAIT_PROOF and isinstance(message, AuthProof):
            return self._on_proof(message, now)
        if self.state is State.AWAIT_AUTH_OK and isinstance(message, AuthOk):
            self.state = State.READY
            assert self.peer is not None and self.verdict is not None
            return Ready(self.peer, self.verdict, self._peer_minor)
        raise RemoteProtocolError(
            f"unexpected {type(message).__name__} in state {self.state.value}"
        )

    def _is_ready(self) -> bool:
        # A method, not an inline comparison: the handshake handlers change
        # `state` behind the type checker's back.
        return self.state is State.READY

    def _check_version(self, major: int, minor: int) -> None:
        check_version(major, minor)
        self._peer_minor = minor

    def _check_peer(self, certificate: bytes, role: str, network: str, now: float) -> None:
        self.peer, self.verdict = check_peer(
            certificate, role, network, self.local.network, self.accept_roles, self.policy, now
        )

    def _on_hello(self, hello: Hello, now: float) -> None:
        self._check_version(hello.major, hello.minor)
        self._check_peer(hello.certificate, hello.role, hello.network, now)
        self._peer_nonce = hello.nonce
        self._queue(
            HelloAck(
                PROTOCOL_MAJOR, PROTOCOL_MINOR, self.local.role, self.local.network, self._nonce
            ),
            now,
        )
        self.state = State.AWAIT_PROOF

    def _on_hello_ack(self, ack: HelloAck, now: float) -> None:
        self._check_version(ack.major, ack.minor)
        assert self._peer_tls_certificate is not None
        self._check_peer(self._peer_tls_certificate, ack.role, ack.network, now)
        digest = hashlib.sha256(self._peer_tls_certificate).digest()
        signature = sign(
            self.local.signing_key,
            DOMAIN_AUTH,
            self.local.network,
            proof_message(digest, ack.nonce, self._nonce),
        )
        self._queue(AuthProof(signature), now)
        self.state = State.AWAIT_AUTH_OK

    def _on_proof(self, proof: AuthProof, now: float) -> Ready:
        assert self.peer is not None and self.verdict is not None
        for certificate in (self.local.certificate, *self.local.previous_certificates):
            digest = hashlib.sha256(certificate).digest()
            try:
                verify(
                    self.peer.public_key,
                    DOMAIN_AUTH,
                    self.local.network,
                    proof_message(digest, self._nonce, self._peer_nonce),
                    proof.signature,
                )
                break
            except SignatureError:
                continue
        else:
            raise AuthenticationError("the peer's key proof does not verify", "bad_proof")
        self._queue(AuthOk(), now)
        self.state = State.READY
        self._decoder.max_frame = self.max_frame
        return Ready(self.peer, self.verdict, self._peer_minor)

    def _on_renew(self, renew: Renew, now: float) -> PeerRenewed:
        assert self.peer is not None
        previous = self.peer
        self._check_peer(renew.certificate, previous.claims.role, self.local.network, now)
        assert self.peer is not None and self.verdict is not None
        if self.peer.public_key != previous.public_key:
            raise AuthenticationError(
                "a renewed certificate must keep the same key", "key_mismatch"
            )
        return PeerRenewed(self.peer, self.verdict)

    # -- time ----------------------------------------------------------------

    def next_timer(self) -> float:
        """When `handle_timer` should next be called (unix seconds)."""
        return min(
            self._last_received + self.heartbeat_timeout, self._last_sent + self.heartbeat_interval
        )

    def handle_timer(self, now: float) -> None:
        """Send a heartbeat when idle; raise RemoteProtocolError when the peer went silent."""
        if self.state is State.CLOSED:
            return
        if now - self._last_received >= self.heartbeat_timeout:
            error = RemoteProtocolError(
                f"no frame from the peer for {self.heartbeat_timeout:.0f} s", "heartbeat_timeout"
            )
            self.state = State.CLOSED
            raise error
        if self.state is State.READY and now - self._last_sent >= self.heartbeat_interval:
            self._ping_seq += 1
            self._ping_outstanding = True
            self._queue(Ping(self._ping_seq), now)

    def _queue(self, message: Message, now: float) -> None:
        self._outbox += encode_frame(message, self.max_frame)
        self._last_sent = now
