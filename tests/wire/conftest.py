"""Helpers that make each wire test read like a conversation between two nodes.

`client_and_server()` builds a connector and an acceptor with none-attested
RA-TLS certificates; `pump()` moves the bytes each wants sent to the other
until both are quiet; `roundtrip()` sends one message and returns what the
other side made of it. Time is passed in everywhere (`NOW`), nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from cocoon.crypto import SUITE_X25519, NodeIdentity
from cocoon.tee import Claims, NoneProvider, PeerPolicy, make_certificate, report_data
from cocoon.wire.connection import Connection
from cocoon.wire.handshake import Event, LocalIdentity, Ready
from cocoon.wire.messages import AnswerEnd, AnswerPart, Message, Request

NOW = 1_750_000_000.0
NETWORK = "testnet"


@dataclass(frozen=True)
class Node:
    """A node's identity as the wire layer sees it, plus its long-term keys."""

    identity: NodeIdentity
    local: LocalIdentity


def make_node(role: str, *, network: str = NETWORK, now: float = NOW) -> Node:
    """A node of `role` with a fresh key and a certificate carrying `none` evidence."""
    identity = NodeIdentity.generate(SUITE_X25519)
    claims = Claims(
        role=role,
        network=network,
        tls_public_key=identity.public_key,
        hpke_suite=identity.hpke.suite,
        hpke_public_key=identity.hpke.public_bytes(),
        version="0.1.0",
        issued_at=int(now),
    )
    evidence = NoneProvider().evidence(report_data(claims))
    certificate = make_certificate(identity.signing_key, claims, evidence, int(now))
    local = LocalIdentity(
        role=role, network=network, certificate=certificate, signing_key=identity.signing_key
    )
    return Node(identity, local)


def open_policy(network: str = NETWORK) -> PeerPolicy:
    """Development policy: `none` evidence accepted."""
    return PeerPolicy(allow_untrusted=True, network=network)


def client_and_server(
    *,
    client: Node | None = None,
    server: Node | None = None,
    client_policy: PeerPolicy | None = None,
    server_policy: PeerPolicy | None = None,
    client_accepts: frozenset[str] = frozenset({"proxy"}),
    server_accepts: frozenset[str] = frozenset({"client"}),
    tls_certificate: bytes | None = None,
    now: float = NOW,
    heartbeat_interval: float = 10.0,
    heartbeat_timeout: float = 30.0,
    max_frame: int | None = None,
) -> tuple[Connection, Connection]:
    """A connector (a client) and an acceptor (a proxy), not yet introduced.

    `tls_certificate` is what TLS showed the connector; by default the
    acceptor's own certificate (a relay would show another one).
    """
    client = client or make_node("client")
    server = server or make_node("proxy")
    extra = {} if max_frame is None else {"max_frame": max_frame}
    connector = Connection(
        connector=True,
        local=client.local,
        policy=client_policy or open_policy(),
        accept_roles=client_accepts,
        now=now,
        peer_tls_certificate=tls_certificate or server.local.certificate,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        **extra,
    )
    acceptor = Connection(
        connector=False,
        local=server.local,
        policy=server_policy or open_policy(),
        accept_roles=server_accepts,
        now=now,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        **extra,
    )
    return connector, acceptor


def pump(a: Connection, b: Connection, now: float = NOW) -> tuple[list[Event], list[Event]]:
    """Move `data_to_send()` both ways until neither has anything; return (a's, b's) events."""
    a_events: list[Event] = []
    b_events: list[Event] = []
    for _ in range(100):
        moved = False
        data = a.data_to_send()
        if data:
            b_events += b.receive_data(data, now)
            moved = True
        data = b.data_to_send()
        if data:
            a_events += a.receive_data(data, now)
            moved = True
        if not moved:
            return a_events, b_events
    raise AssertionError("the connections kept talking")


def handshake(client: Connection, server: Connection, now: float = NOW) -> tuple[Ready, Ready]:
    """Run the whole handshake; return the Ready each side got."""
    client.initiate(now)
    client_events, server_events = pump(client, server, now)
    assert [type(e) for e in client_events] == [Ready]
    assert [type(e) for e in server_events] == [Ready]
    client_ready, server_ready = client_events[0], server_events[0]
    assert isinstance(client_ready, Ready) and isinstance(server_ready, Ready)
    return client_ready, server_ready


def ready_pair(**options: object) -> tuple[Connection, Connection]:
    """A client and a server that have completed the handshake."""
    client, server = client_and_server(**options)  # type: ignore[arg-type]
    handshake(client, server)
    return client, server


def roundtrip(
    sender: Connection, receiver: Connection, message: Message, now: float = NOW
) -> list[Event]:
    """Send `message` with `send()` and feed the bytes to the receiver; return its events."""
    return receiver.receive_data(sender.send(message, now), now)


def request(request_id: str, sealed: bytes = b"sealed") -> Request:
    return Request(request_id, "qwen", 1000, 256, 30_000, ["abcd"], sealed)


def part(request_id: str, index: int, sealed: bytes | None = None) -> AnswerPart:
    return AnswerPart(request_id, index, sealed if sealed is not None else b"p%d" % index)


def end(request_id: str, index: int) -> AnswerEnd:
    return AnswerEnd(request_id, index, b"last", b"receipt")
