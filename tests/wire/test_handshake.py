"""The handshake: Hello, HelloAck, AuthProof, AuthOk, and every way a peer is refused."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto import DOMAIN_AUTH, sign
from cocoon.tee import PeerPolicy
from cocoon.wire import connection as connection_module
from cocoon.wire.connection import Connection
from cocoon.wire.errors import (
    AuthenticationError,
    LocalProtocolError,
    PeerError,
    RemoteProtocolError,
    VersionMismatch,
)
from cocoon.wire.framing import FrameDecoder, encode_frame
from cocoon.wire.handshake import Ready, State
from cocoon.wire.messages import (
    PROTOCOL_MINOR,
    AuthOk,
    AuthProof,
    Error,
    Hello,
    HelloAck,
    Message,
    Ping,
    Pong,
)

from .conftest import (
    NETWORK,
    NOW,
    client_and_server,
    handshake,
    make_node,
    open_policy,
    pump,
    request,
)


def sent(data: bytes) -> list[Message]:
    """The messages in some bytes a connection wants sent."""
    return list(FrameDecoder().feed(data))


def test_handshake_succeeds_and_both_sides_learn_the_peer() -> None:
    client_node, server_node = make_node("client"), make_node("proxy")
    client, server = client_and_server(client=client_node, server=server_node)

    client.initiate(NOW)
    hello = sent(client.data_to_send())
    assert len(hello) == 1 and isinstance(hello[0], Hello)
    assert client.state is State.AWAIT_HELLO_ACK
    # Replay the Hello so each step can be watched.
    assert server.receive_data(encode_frame(hello[0]), NOW) == []
    (ack,) = sent(server.data_to_send())
    assert isinstance(ack, HelloAck) and ack.role == "proxy" and ack.network == NETWORK
    assert client.receive_data(encode_frame(ack), NOW) == []
    (proof,) = sent(client.data_to_send())
    assert isinstance(proof, AuthProof)
    (server_ready,) = server.receive_data(encode_frame(proof), NOW)
    (auth_ok,) = sent(server.data_to_send())
    assert auth_ok == AuthOk()
    (client_ready,) = client.receive_data(encode_frame(auth_ok), NOW)

    assert isinstance(client_ready, Ready) and isinstance(server_ready, Ready)
    assert client.state is State.READY and server.state is State.READY
    assert client_ready.peer.der == server_node.local.certificate
    assert server_ready.peer.der == client_node.local.certificate
    assert client_ready.peer.claims.role == "proxy"
    assert server_ready.peer.claims.role == "client"
    assert client_ready.peer.key_id == server_node.identity.key_id
    assert server_ready.peer.key_id == client_node.identity.key_id
    for ready in (client_ready, server_ready):
        assert ready.verdict.trusted is False
        assert ready.verdict.provider == "none"
        assert ready.minor == PROTOCOL_MINOR
    assert client.peer == client_ready.peer and server.peer == server_ready.peer
    assert pump(client, server) == ([], [])


def test_handshake_with_pump_helper() -> None:
    client, server = client_and_server()
    client_ready, server_ready = handshake(client, server)
    assert client_ready.peer.claims.role == "proxy"
    assert server_ready.peer.claims.role == "client"


def test_frame_after_auth_ok_in_the_same_read_is_processed() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    client.receive_data(server.data_to_send(), NOW)
    server.receive_data(client.data_to_send(), NOW)
    # AuthOk and a Ping from the acceptor arrive in one read.
    events = client.receive_data(server.data_to_send() + encode_frame(Ping(9)), NOW)
    assert [type(e) for e in events] == [Ready]
    assert client.state is State.READY
    assert sent(client.data_to_send()) == [Pong(9)]


def test_minor_version_difference_is_fine_and_reported() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    (hello,) = sent(client.data_to_send())
    assert isinstance(hello, Hello)
    newer = Hello(
        hello.major, hello.minor + 4, hello.role, hello.network, hello.nonce, hello.certificate
    )
    server.receive_data(encode_frame(newer), NOW)
    client.receive_data(server.data_to_send(), NOW)
    (ready,) = server.receive_data(client.data_to_send(), NOW)
    assert isinstance(ready, Ready) and ready.minor == hello.minor + 4


def test_major_version_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    client, server = client_and_server()
    with monkeypatch.context() as patch:
        patch.setattr(connection_module, "PROTOCOL_MAJOR", 2)
        client.initiate(NOW)

    with pytest.raises(VersionMismatch) as refused:
        server.receive_data(client.data_to_send(), NOW)
    assert refused.value.code == "version_mismatch"
    assert server.state is State.CLOSED

    (error,) = sent(server.data_to_send())
    assert isinstance(error, Error) and error.request_id == ""
    with pytest.raises(PeerError) as failed:
        client.receive_data(encode_frame(error), NOW)
    assert failed.value.code == "version_mismatch"
    assert f"peer speaks protocol 2.{PROTOCOL_MINOR}" in failed.value.message
    assert f"1.{PROTOCOL_MINOR}" in failed.value.message and "major" in failed.value.message
    assert client.state is State.CLOSED


def test_acceptor_with_another_major_refused_by_connector() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    server.data_to_send()
    with pytest.raises(VersionMismatch):
        client.receive_data(encode_frame(HelloAck(3, 0, "proxy", NETWORK, b"s" * 32)), NOW)
    (error,) = sent(client.data_to_send())
    assert isinstance(error, Error) and error.code == "version_mismatch"


def test_connector_on_another_network_is_refused() -> None:
    other = make_node("client", network="othernet")
    client, server = client_and_server(client=other, client_policy=open_policy("othernet"))
    client.initiate(NOW)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(client.data_to_send(), NOW)
    assert refused.value.reason == "network_mismatch"
    assert refused.value.code == "unauthorized"
    with pytest.raises(PeerError) as failed:
        client.receive_data(server.data_to_send(), NOW)
    assert failed.value.code == "unauthorized"
    # The refusal names this node's network, never what the peer sent (issue 16).
    assert NETWORK in failed.value.message and "othernet" not in failed.value.message


def test_certificate_for_another_network_behind_a_matching_hello_is_refused() -> None:
    # The Hello claims the right network; the certificate's claims do not.
    other = make_node("client", network="othernet")
    client, server = client_and_server(client=other)
    client.initiate(NOW)
    (hello,) = sent(client.data_to_send())
    assert isinstance(hello, Hello)
    lying = Hello(hello.major, hello.minor, hello.role, NETWORK, hello.nonce, hello.certificate)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(encode_frame(lying), NOW)
    assert refused.value.reason == "network_mismatch"


def test_role_not_accepted() -> None:
    client, server = client_and_server(
        client=make_node("worker"), server_accepts=frozenset({"client"})
    )
    client.initiate(NOW)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(client.data_to_send(), NOW)
    assert refused.value.reason == "role_mismatch"
    assert "accepted: client" in str(refused.value) and "worker" not in str(refused.value)


def test_hello_role_must_match_the_certificate() -> None:
    client, server = client_and_server(client=make_node("worker"))
    client.initiate(NOW)
    (hello,) = sent(client.data_to_send())
    assert isinstance(hello, Hello)
    lying = Hello(hello.major, hello.minor, "client", NETWORK, hello.nonce, hello.certificate)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(encode_frame(lying), NOW)
    assert refused.value.reason == "role_mismatch"


def test_connector_refuses_an_acceptor_of_an_unwanted_role() -> None:
    client, server = client_and_server(
        server=make_node("worker"), server_accepts=frozenset({"client"})
    )
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    with pytest.raises(AuthenticationError) as refused:
        client.receive_data(server.data_to_send(), NOW)
    assert refused.value.reason == "role_mismatch"
    with pytest.raises(PeerError) as failed:
        server.receive_data(client.data_to_send(), NOW)
    assert failed.value.code == "unauthorized"


def test_untrusted_evidence_refused_by_acceptor_policy() -> None:
    strict = PeerPolicy(allow_untrusted=False, network=NETWORK)
    client, server = client_and_server(server_policy=strict)
    client.initiate(NOW)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(client.data_to_send(), NOW)
    assert refused.value.reason == "untrusted_provider"
    with pytest.raises(PeerError) as failed:
        client.receive_data(server.data_to_send(), NOW)
    assert failed.value.code == "unauthorized"
    assert "not attested" in failed.value.message
    assert "untrusted peers are not allowed" in failed.value.message


def test_untrusted_evidence_refused_by_connector_policy() -> None:
    strict = PeerPolicy(allow_untrusted=False, network=NETWORK)
    client, server = client_and_server(client_policy=strict)
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    with pytest.raises(AuthenticationError) as refused:
        client.receive_data(server.data_to_send(), NOW)
    assert refused.value.reason == "untrusted_provider"
    assert client.state is State.CLOSED


def test_expired_certificate_refused() -> None:
    client, server = client_and_server(client=make_node("client", now=NOW - 10 * 86400))
    client.initiate(NOW)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(client.data_to_send(), NOW)
    assert refused.value.reason == "expired"


def test_garbage_certificate_refused() -> None:
    _, server = client_and_server()
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(
            encode_frame(Hello(1, 0, "client", NETWORK, b"n" * 32, b"not a certificate")), NOW
        )
    assert refused.value.reason == "malformed"


def _proof_exchange(**options: object) -> tuple[Connection, Connection]:
    """Run the handshake up to the AuthProof, which is left in the connector's outbox."""
    client, server = client_and_server(**options)  # type: ignore[arg-type]
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    client.receive_data(server.data_to_send(), NOW)
    return client, server


def test_proof_over_a_relays_certificate_is_refused() -> None:
    # A relay terminates TLS with its own (valid, attested) certificate and
    # forwards the frames: the connector signs the relay's certificate hash,
    # which the real acceptor must not accept.
    relay = make_node("proxy")
    client, server = _proof_exchange(tls_certificate=relay.local.certificate)
    with pytest.raises(AuthenticationError) as refused:
        server.receive_data(client.data_to_send(), NOW)
    assert refused.value.reason == "bad_proof"


CLIENT_NONCE = b"c" * 32
SERVER_NONCE = b"s" * 32


def _acceptor_awaiting_proof() -> tuple[Connection, Ed25519PrivateKey, bytes]:
    """An acceptor with a known nonce that got a Hello with a known nonce.

    Returns it, the connector's key, and the message a genuine proof signs:
    SHA-256 of the acceptor's certificate, then its nonce, then the connector's.
    """
    client_node, server_node = make_node("client"), make_node("proxy")
    acceptor = Connection(
        connector=False,
        local=server_node.local,
        policy=open_policy(),
        accept_roles=frozenset({"client"}),
        now=NOW,
        nonce=SERVER_NONCE,
    )
    hello = Hello(1, 0, "client", NETWORK, CLIENT_NONCE, client_node.local.certificate)
    acceptor.receive_data(encode_frame(hello), NOW)
    assert acceptor.state is State.AWAIT_PROOF
    digest = hashlib.sha256(server_node.local.certificate).digest()
    return acceptor, client_node.identity.signing_key, digest + SERVER_NONCE + CLIENT_NONCE


def test_proof_signed_with_another_key_is_refused() -> None:
    acceptor, _, message = _acceptor_awaiting_proof()
    # The right message, signed by a key other than the one in the Hello's certificate.
    forged = AuthProof(sign(Ed25519PrivateKey.generate(), DOMAIN_AUTH, NETWORK, message))
    with pytest.raises(AuthenticationError) as refused:
        acceptor.receive_data(encode_frame(forged), NOW)
    assert refused.value.reason == "bad_proof"
    assert acceptor.state is State.CLOSED
    ack, error = sent(acceptor.data_to_send())
    assert isinstance(ack, HelloAck)
    assert isinstance(error, Error) and error.code == "unauthorized"


def test_proof_over_the_documented_message_is_accepted() -> None:
    acceptor, key, message = _acceptor_awaiting_proof()
    (ready,) = acceptor.receive_data(
        encode_frame(AuthProof(sign(key, DOMAIN_AUTH, NETWORK, message))), NOW
    )
    assert isinstance(ready, Ready)


@pytest.mark.parametrize("variant", ["domain", "network", "nonces_swapped", "truncated", "empty"])
def test_proof_over_another_message_is_refused(variant: str) -> None:
    acceptor, key, message = _acceptor_awaiting_proof()
    digest = message[:32]
    signature = {
        "domain": lambda: sign(key, b"cocoon/receipt/v1", NETWORK, message),
        "network": lambda: sign(key, DOMAIN_AUTH, "othernet", message),
        "nonces_swapped": lambda: sign(
            key, DOMAIN_AUTH, NETWORK, digest + CLIENT_NONCE + SERVER_NONCE
        ),
        "truncated": lambda: sign(key, DOMAIN_AUTH, NETWORK, message)[:63],
        "empty": lambda: b"",
    }[variant]()
    with pytest.raises(AuthenticationError) as refused:
        acceptor.receive_data(encode_frame(AuthProof(signature)), NOW)
    assert refused.value.reason == "bad_proof"


def test_auth_proof_before_hello_is_a_protocol_error() -> None:
    _, server = client_and_server()
    with pytest.raises(RemoteProtocolError) as refused:
        server.receive_data(encode_frame(AuthProof(b"x" * 64)), NOW)
    assert not isinstance(refused.value, AuthenticationError)
    assert "AuthProof" in str(refused.value)
    (error,) = sent(server.data_to_send())
    assert isinstance(error, Error) and error.code == "protocol_error"
    assert server.state is State.CLOSED


def test_request_before_handshake_is_a_protocol_error() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(encode_frame(request("r1")), NOW)


def test_request_to_connector_before_auth_ok_is_a_protocol_error() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    server.receive_data(client.data_to_send(), NOW)
    client.receive_data(server.data_to_send(), NOW)
    assert client.state is State.AWAIT_AUTH_OK
    with pytest.raises(RemoteProtocolError):
        client.receive_data(encode_frame(request("r1")), NOW)


def test_second_hello_after_handshake_is_a_protocol_error() -> None:
    client, server = client_and_server()
    handshake(client, server)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(
            encode_frame(Hello(1, 0, "client", NETWORK, b"n" * 32, client.local.certificate)),
            NOW,
        )


def test_send_before_ready_is_a_local_error() -> None:
    client, server = client_and_server()
    with pytest.raises(LocalProtocolError):
        client.send(request("r1"), NOW)
    client.initiate(NOW)
    with pytest.raises(LocalProtocolError):
        client.send(request("r1"), NOW)
    with pytest.raises(LocalProtocolError):
        server.send(Ping(1), NOW)


def test_initiate_only_once_and_only_by_the_connector() -> None:
    client, server = client_and_server()
    client.initiate(NOW)
    with pytest.raises(LocalProtocolError):
        client.initiate(NOW)
    with pytest.raises(LocalProtocolError):
        server.initiate(NOW)


def test_connector_needs_the_tls_certificate() -> None:
    node = make_node("client")
    with pytest.raises(LocalProtocolError):
        Connection(
            connector=True,
            local=node.local,
            policy=open_policy(),
            accept_roles=frozenset({"proxy"}),
            now=NOW,
        )


def test_closed_connection_ignores_further_data() -> None:
    _, server = client_and_server()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(encode_frame(AuthOk()), NOW)
    assert server.receive_data(encode_frame(Ping(1)), NOW) == []
