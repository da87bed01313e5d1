"""Seal sessions: one HPKE encapsulation per client and worker, not one per request."""

from __future__ import annotations

import msgspec
import pytest

from cocoon.crypto import SUITE_HYBRID, SUITE_X25519, HpkeKeyPair, Recipient, SealError
from cocoon.crypto.sealing import (
    OpenSessions,
    SealSessions,
    decode_envelope,
    open_request,
    seal_request,
)
from cocoon.crypto.sealing import _encoder as envelope_encoder

NETWORK = "testnet"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _worker(
    name: str, suite: str = SUITE_X25519, **options: object
) -> tuple[Recipient, OpenSessions]:
    keypair = HpkeKeyPair.generate(suite)
    sessions = OpenSessions(keypair, NETWORK, **options)  # type: ignore[arg-type]
    return Recipient(name, suite, keypair.public_bytes()), sessions


def _seal(
    client: SealSessions, recipients: list[Recipient], request_id: str, text: bytes = b"x"
) -> bytes:
    return seal_request(text, recipients, request_id, NETWORK, client)


@pytest.mark.parametrize("suite", [SUITE_HYBRID, SUITE_X25519])
def test_one_encapsulation_and_one_decapsulation_per_session(suite: str) -> None:
    recipient, worker = _worker("w0", suite)
    client = SealSessions(NETWORK)
    openings = set()
    for i in range(5):
        envelope = _seal(client, [recipient], f"r{i}", f"p{i}".encode())
        openings.add(decode_envelope(envelope).wraps[0].opening)
        assert open_request(envelope, "w0", worker, f"r{i}", NETWORK) == f"p{i}".encode()
    assert len(openings) == 1
    assert client.opened == 1 and worker.opened == 1


def test_each_worker_has_its_own_session() -> None:
    (r0, w0), (r1, w1) = _worker("w0"), _worker("w1")
    client = SealSessions(NETWORK)
    for i in range(3):
        envelope = _seal(client, [r0, r1], f"r{i}")
        assert open_request(envelope, "w0", w0, f"r{i}", NETWORK) == b"x"
        assert open_request(envelope, "w1", w1, f"r{i}", NETWORK) == b"x"
    assert client.opened == 2 and w0.opened == w1.opened == 1
    assert client.opening("w0") != client.opening("w1")


def test_a_worker_that_forgot_a_session_opens_it_again() -> None:
    recipient, worker = _worker("w0")
    client = SealSessions(NETWORK)
    open_request(_seal(client, [recipient], "r1"), "w0", worker, "r1", NETWORK)
    restarted = OpenSessions(worker.keypair, NETWORK)  # same key, nothing remembered
    assert (
        open_request(_seal(client, [recipient], "r2", b"y"), "w0", restarted, "r2", NETWORK) == b"y"
    )
    assert client.opened == 1 and restarted.opened == 1


def test_a_full_worker_drops_the_least_recently_used_session() -> None:
    recipient, worker = _worker("w0", capacity=2)
    clients = [SealSessions(NETWORK) for _ in range(3)]
    for i, client in enumerate(clients):
        open_request(_seal(client, [recipient], f"a{i}"), "w0", worker, f"a{i}", NETWORK)
    assert len(worker) == 2 and worker.opened == 3
    for i in (1, 2):  # still held
        open_request(_seal(clients[i], [recipient], f"b{i}"), "w0", worker, f"b{i}", NETWORK)
    assert worker.opened == 3
    open_request(_seal(clients[0], [recipient], "b0"), "w0", worker, "b0", NETWORK)
    assert worker.opened == 4 and len(worker) == 2


def test_client_sessions_end_after_their_uses_or_their_age() -> None:
    recipient, _ = _worker("w0")
    clock = Clock()
    client = SealSessions(NETWORK, max_uses=3, max_age_s=60, clock=clock)
    openings = [
        decode_envelope(_seal(client, [recipient], f"r{i}")).wraps[0].opening for i in range(4)
    ]
    assert openings[0] == openings[1] == openings[2] != openings[3]
    clock.now += 59
    _seal(client, [recipient], "later")
    assert client.opening("w0") == openings[3]
    clock.now += 2
    _seal(client, [recipient], "too-late")
    assert client.opening("w0") != openings[3]
    assert client.opened == 3


def test_a_worker_reopens_a_session_past_its_age() -> None:
    clock = Clock()
    recipient, worker = _worker("w0", max_age_s=100, clock=clock)
    client = SealSessions(NETWORK)
    open_request(_seal(client, [recipient], "r1"), "w0", worker, "r1", NETWORK)
    clock.now += 50
    open_request(_seal(client, [recipient], "r2"), "w0", worker, "r2", NETWORK)
    assert worker.opened == 1
    clock.now += 51
    open_request(_seal(client, [recipient], "r3"), "w0", worker, "r3", NETWORK)
    assert worker.opened == 2


def test_a_new_worker_key_opens_a_new_session() -> None:
    recipient, _ = _worker("w0")
    client = SealSessions(NETWORK)
    _seal(client, [recipient], "r1")
    first = client.opening("w0")
    rekeyed, worker = _worker("w0")
    envelope = _seal(client, [rekeyed], "r2")
    assert client.opening("w0") != first
    assert open_request(envelope, "w0", worker, "r2", NETWORK) == b"x"


def test_retain_drops_workers_that_left() -> None:
    client = SealSessions(NETWORK)
    for name in ("a", "b"):
        _seal(client, [_worker(name)[0]], "r")
    client.retain({"b"})
    assert len(client) == 1 and client.opening("a") == b"" and client.opening("b")


def test_a_proxy_cannot_wrap_for_someone_elses_session() -> None:
    """The proxy sees every opening and knows every worker's public key: with a
    session of its own it can seal requests, but a victim's opening with a wrap
    of the proxy's making does not open, and the victim's session still works."""
    recipient, worker = _worker("w0")
    victim, proxy = SealSessions(NETWORK), SealSessions(NETWORK)
    open_request(_seal(victim, [recipient], "r1"), "w0", worker, "r1", NETWORK)
    forged = decode_envelope(_seal(proxy, [recipient], "r2", b"evil"))
    wrap = msgspec.structs.replace(forged.wraps[0], opening=victim.opening("w0"))
    relabelled = msgspec.structs.replace(forged, wraps=[wrap])
    with pytest.raises(SealError):
        open_request(envelope_encoder.encode(relabelled), "w0", worker, "r2", NETWORK)
    assert (
        open_request(_seal(victim, [recipient], "r3", b"ok"), "w0", worker, "r3", NETWORK) == b"ok"
    )


def test_a_wrap_moved_to_another_request_or_worker_fails() -> None:
    (r0, w0), (r1, w1) = _worker("w0"), _worker("w1")
    client = SealSessions(NETWORK)
    envelope = decode_envelope(_seal(client, [r0, r1], "r1"))
    # w0's wrap presented as w1's: its opening is sealed to w0, its AAD names w0.
    swapped = msgspec.structs.replace(envelope.wraps[0], key_id="w1")
    with pytest.raises(SealError):
        open_request(
            envelope_encoder.encode(msgspec.structs.replace(envelope, wraps=[swapped])),
            "w1",
            w1,
            "r1",
            NETWORK,
        )
    later = decode_envelope(_seal(client, [r0], "r2"))
    transplanted = msgspec.structs.replace(later, request_id="r1")
    with pytest.raises(SealError):
        open_request(envelope_encoder.encode(transplanted), "w0", w0, "r1", NETWORK)


def test_sessions_belong_to_one_network() -> None:
    recipient, worker = _worker("w0")
    with pytest.raises(SealError):
        seal_request(b"x", [recipient], "r", "mainnet", SealSessions(NETWORK))
    with pytest.raises(SealError):
        open_request(seal_request(b"x", [recipient], "r", NETWORK), "w0", worker, "r", "mainnet")
