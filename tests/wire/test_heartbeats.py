"""Heartbeats with injected time: a quiet link is pinged, a silent peer is dropped."""

from __future__ import annotations

import pytest

from cocoon.wire.connection import Connection
from cocoon.wire.errors import RemoteProtocolError
from cocoon.wire.framing import FrameDecoder
from cocoon.wire.handshake import State
from cocoon.wire.messages import Ping, Pong

from .conftest import NOW, client_and_server, handshake, part, pump, request, roundtrip

INTERVAL = 10.0
TIMEOUT = 30.0


def pair() -> tuple[Connection, Connection]:
    client, server = client_and_server(heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT)
    handshake(client, server)
    return client, server


def test_no_ping_before_the_interval() -> None:
    client, _ = pair()
    client.handle_timer(NOW + INTERVAL - 0.1)
    assert client.data_to_send() == b""


def test_idle_connection_pings_and_the_peer_answers() -> None:
    client, server = pair()
    assert client.next_timer() == NOW + INTERVAL
    client.handle_timer(NOW + INTERVAL)
    data = client.data_to_send()
    assert FrameDecoder().feed(data) == [Ping(1)]

    # The Ping is not an event for the application; the Pong is queued.
    assert server.receive_data(data, NOW + INTERVAL + 0.1) == []
    answer = server.data_to_send()
    assert FrameDecoder().feed(answer) == [Pong(1)]
    assert client.receive_data(answer, NOW + INTERVAL + 0.2) == []

    # The next Ping carries the next sequence number.
    client.handle_timer(NOW + 2 * INTERVAL)
    assert FrameDecoder().feed(client.data_to_send()) == [Ping(2)]


def test_ping_pong_keeps_both_sides_alive_for_a_long_time() -> None:
    client, server = pair()
    now = NOW
    for _ in range(20):
        now += INTERVAL
        for side in (client, server):
            side.handle_timer(now)
        pump(client, server, now)
    assert client.state is State.READY and server.state is State.READY
    assert now - NOW > 5 * TIMEOUT


def test_sending_application_frames_postpones_the_ping() -> None:
    client, server = pair()
    roundtrip(client, server, request("r1"), NOW + 5)
    assert client.next_timer() == NOW + 5 + INTERVAL
    client.handle_timer(NOW + INTERVAL)
    assert client.data_to_send() == b""


def test_silent_peer_times_out() -> None:
    client, _ = pair()
    client.handle_timer(NOW + INTERVAL)
    client.data_to_send()  # the Ping is lost; the peer never answers
    client.handle_timer(NOW + TIMEOUT - 0.1)
    with pytest.raises(RemoteProtocolError) as timed_out:
        client.handle_timer(NOW + TIMEOUT)
    assert timed_out.value.code == "heartbeat_timeout"
    assert client.state is State.CLOSED
    # Once closed, timers do nothing.
    client.handle_timer(NOW + 2 * TIMEOUT)


def test_handshake_that_stalls_times_out_too() -> None:
    client, _ = client_and_server(heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT)
    client.initiate(NOW)
    # No Ping during the handshake: only a ready connection sends them.
    client.handle_timer(NOW + INTERVAL)
    client.data_to_send()
    client.handle_timer(NOW + INTERVAL + 1)
    assert client.data_to_send() == b""
    with pytest.raises(RemoteProtocolError) as timed_out:
        client.handle_timer(NOW + TIMEOUT)
    assert timed_out.value.code == "heartbeat_timeout"


def test_next_timer_moves_when_frames_arrive() -> None:
    client, server = client_and_server(heartbeat_interval=100.0, heartbeat_timeout=TIMEOUT)
    handshake(client, server)
    assert client.next_timer() == NOW + TIMEOUT
    roundtrip(client, server, request("r1"), NOW + 1)
    roundtrip(server, client, part("r1", 0), NOW + 20)
    assert client.next_timer() == NOW + 20 + TIMEOUT
    # And the deadline that matters moved with it.
    client.handle_timer(NOW + TIMEOUT + 1)
    assert client.state is State.READY


def test_next_timer_is_the_earlier_of_ping_and_timeout() -> None:
    client, _ = pair()
    assert client.next_timer() == NOW + INTERVAL
    client.handle_timer(NOW + INTERVAL)
    client.data_to_send()
    assert client.next_timer() == NOW + 2 * INTERVAL
    client.handle_timer(NOW + 2 * INTERVAL)
    client.handle_timer(NOW + 3 * INTERVAL - 1)
    # Last frame received at NOW: the timeout comes before the next Ping.
    assert client.next_timer() == NOW + TIMEOUT
