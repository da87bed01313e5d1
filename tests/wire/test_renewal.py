"""Certificates are renewed for the same key; long-lived connections learn the new one."""

from __future__ import annotations

import dataclasses

import pytest

from cocoon.tee import Claims, NoneProvider, make_certificate, report_data
from cocoon.wire.errors import AuthenticationError
from cocoon.wire.handshake import PeerRenewed
from cocoon.wire.messages import Renew

from .conftest import NOW, Node, client_and_server, handshake, make_node, pump


def reissue(node: Node, issued_at: float, validity_s: int = 86_400) -> bytes:
    """A fresh certificate for the node's same key, issued at `issued_at`."""
    claims = Claims(
        role=node.local.role,
        network=node.local.network,
        tls_public_key=node.identity.public_key,
        hpke_suite=node.identity.hpke.suite,
        hpke_public_key=node.identity.hpke.public_bytes(),
        version="0.1.0",
        issued_at=int(issued_at),
    )
    evidence = NoneProvider().evidence(report_data(claims))
    return make_certificate(node.identity.signing_key, claims, evidence, int(issued_at), validity_s)


def test_a_renewed_certificate_replaces_the_peers_view() -> None:
    client_node, server_node = make_node("client"), make_node("proxy")
    client, server = client_and_server(client=client_node, server=server_node)
    handshake(client, server)
    fresh = reissue(client_node, NOW + 3600)
    server.receive_data(client.send(Renew(fresh), NOW + 3600), NOW + 3600)
    assert server.peer is not None and server.peer.der == fresh
    assert server.peer.public_key == client_node.identity.public_key


def test_the_event_carries_the_verified_certificate() -> None:
    client_node, server_node = make_node("client"), make_node("proxy")
    client, server = client_and_server(client=client_node, server=server_node)
    handshake(client, server)
    fresh = reissue(server_node, NOW + 10)
    events = client.receive_data(server.send(Renew(fresh), NOW + 10), NOW + 10)
    assert len(events) == 1 and isinstance(events[0], PeerRenewed)
    assert events[0].peer.der == fresh and not events[0].verdict.trusted


def test_a_renewal_cannot_swap_in_another_key() -> None:
    client, server = client_and_server()
    handshake(client, server)
    impostor = make_node("client")
    with pytest.raises(AuthenticationError, match="same key"):
        server.receive_data(client.send(Renew(reissue(impostor, NOW)), NOW), NOW)


def test_an_expired_renewal_is_refused() -> None:
    client_node = make_node("client")
    client, server = client_and_server(client=client_node)
    handshake(client, server)
    stale = reissue(client_node, NOW - 10 * 86_400, validity_s=60)
    with pytest.raises(AuthenticationError, match="expired"):
        server.receive_data(client.send(Renew(stale), NOW), NOW)


def test_a_proof_over_the_certificate_just_renewed_away_still_counts() -> None:
    # The connector's TLS handshake saw the old certificate; the acceptor
    # renewed before reading the proof.
    server_node = make_node("proxy")
    old = server_node.local.certificate
    fresh = reissue(server_node, NOW + 1)
    renewed = Node(
        server_node.identity,
        dataclasses.replace(server_node.local, certificate=fresh, previous_certificates=(old,)),
    )
    client, server = client_and_server(server=renewed, tls_certificate=old)
    client.initiate(NOW)
    client_events, server_events = pump(client, server)
    assert client_events and server_events


def test_without_the_old_certificate_on_file_that_proof_fails() -> None:
    server_node = make_node("proxy")
    old = server_node.local.certificate
    renewed = Node(
        server_node.identity,
        dataclasses.replace(server_node.local, certificate=reissue(server_node, NOW + 1)),
    )
    client, server = client_and_server(server=renewed, tls_certificate=old)
    client.initiate(NOW)
    with pytest.raises(AuthenticationError, match="bad_proof"):
        pump(client, server)
