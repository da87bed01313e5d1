"""Many requests on one connection: each answered in order, each closed on its own."""

from __future__ import annotations

import pytest

from cocoon.wire.errors import LocalProtocolError, PeerError, RemoteProtocolError
from cocoon.wire.framing import FrameDecoder, encode_frame
from cocoon.wire.handshake import State
from cocoon.wire.messages import (
    AnswerEnd,
    AnswerPart,
    Cancel,
    DirectoryRequest,
    Error,
    Ping,
    WorkerLoad,
)

from .conftest import NOW, end, part, ready_pair, request, roundtrip


def test_request_answered_by_parts_and_end() -> None:
    client, server = ready_pair()
    assert roundtrip(client, server, request("r1")) == [request("r1")]
    assert "r1" in client.streams and "r1" in server.streams
    for i in range(3):
        assert roundtrip(server, client, part("r1", i)) == [part("r1", i)]
    assert roundtrip(server, client, end("r1", 3)) == [end("r1", 3)]
    assert len(client.streams) == 0 and len(server.streams) == 0


def test_interleaved_requests_each_delivered_in_order() -> None:
    client, server = ready_pair()
    ids = ["a", "b", "c"]
    wire = b"".join(client.send(request(i), NOW) for i in ids)
    assert server.receive_data(wire, NOW) == [request(i) for i in ids]
    assert sorted(server.streams.open_ids()) == ids

    # The server answers round-robin, "b" one part shorter, all in one burst.
    frames = []
    for index in range(4):
        for request_id in ids:
            if request_id == "b" and index == 3:
                frames.append(end("b", 3))
            elif index < 3 or request_id != "b":
                frames.append(part(request_id, index))
    frames += [end("a", 4), end("c", 4)]
    burst = b"".join(server.send(f, NOW) for f in frames)
    events = client.receive_data(burst, NOW)
    assert events == frames

    for request_id in ids:
        mine = [e for e in events if isinstance(e, AnswerPart | AnswerEnd)]
        mine = [e for e in mine if e.request_id == request_id]
        assert [e.index for e in mine] == list(range(len(mine)))
        assert isinstance(mine[-1], AnswerEnd)
    assert len(client.streams) == 0 and len(server.streams) == 0


def test_interleaved_requests_survive_byte_by_byte_delivery() -> None:
    client, server = ready_pair()
    server.receive_data(client.send(request("x"), NOW) + client.send(request("y"), NOW), NOW)
    frames = [part("x", 0), part("y", 0), part("y", 1), part("x", 1), end("y", 2), end("x", 2)]
    burst = b"".join(server.send(f, NOW) for f in frames)
    events = []
    for i in range(len(burst)):
        events += client.receive_data(burst[i : i + 1], NOW)
    assert events == frames


def test_requests_flow_both_ways() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("from-client"))
    roundtrip(server, client, request("from-server"))
    assert roundtrip(client, server, end("from-server", 0)) == [end("from-server", 0)]
    assert roundtrip(server, client, end("from-client", 0)) == [end("from-client", 0)]


def test_non_request_messages_pass_through() -> None:
    client, server = ready_pair()
    assert roundtrip(client, server, DirectoryRequest(1, "qwen")) == [DirectoryRequest(1, "qwen")]
    assert roundtrip(server, client, WorkerLoad(2, 0)) == [WorkerLoad(2, 0)]


def test_out_of_order_part_is_a_protocol_error() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(server, client, part("r1", 0))
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data(encode_frame(part("r1", 2)), NOW)
    assert refused.value.code == "out_of_order"
    assert client.state is State.CLOSED
    (error,) = FrameDecoder().feed(client.data_to_send())
    assert isinstance(error, Error) and error.code == "out_of_order" and error.request_id == ""


def test_repeated_part_is_a_protocol_error() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(server, client, part("r1", 0))
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data(encode_frame(part("r1", 0)), NOW)
    assert refused.value.code == "out_of_order"


def test_end_with_wrong_index_is_a_protocol_error() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data(encode_frame(end("r1", 5)), NOW)
    assert refused.value.code == "out_of_order"


def test_sending_out_of_order_is_a_local_error() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    with pytest.raises(LocalProtocolError):
        server.send(part("r1", 1), NOW)
    with pytest.raises(LocalProtocolError):
        server.send(end("r1", 1), NOW)


def test_duplicate_open_request_id_from_the_peer() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    with pytest.raises(RemoteProtocolError) as refused:
        server.receive_data(encode_frame(request("r1")), NOW)
    assert refused.value.code == "duplicate_request"


def test_duplicate_open_request_id_of_our_own() -> None:
    client, _ = ready_pair()
    client.send(request("r1"), NOW)
    with pytest.raises(LocalProtocolError):
        client.send(request("r1"), NOW)


def test_peer_reusing_an_id_we_opened_is_a_duplicate() -> None:
    # Rule 1: an id must not be open already, in either direction.
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data(encode_frame(request("r1")), NOW)
    assert refused.value.code == "duplicate_request"


def test_id_can_be_reused_after_the_request_ended() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(server, client, end("r1", 0))
    assert roundtrip(client, server, request("r1")) == [request("r1")]


@pytest.mark.parametrize(
    "frame",
    [part("nope", 0), end("nope", 0), Error("nope", "overloaded", "busy")],
    ids=["part", "end", "error"],
)
def test_answer_for_an_unknown_request(frame: AnswerPart | AnswerEnd | Error) -> None:
    client, _ = ready_pair()
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data(encode_frame(frame), NOW)
    assert "nope" in str(refused.value)


def test_answer_from_the_requesting_side_is_a_protocol_error() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    # The client asked; it may not answer its own request.
    with pytest.raises(RemoteProtocolError):
        server.receive_data(encode_frame(part("r1", 0)), NOW)


def test_cancel_then_late_parts_are_dropped_quietly() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(client, server, request("r2"))
    roundtrip(server, client, part("r1", 0))

    cancel = client.send(Cancel("r1"), NOW)
    assert "r1" not in client.streams
    # Parts the server sent before it saw the Cancel are still in flight.
    in_flight = server.send(part("r1", 1), NOW) + server.send(part("r1", 2), NOW)
    assert client.receive_data(in_flight, NOW) == []
    assert client.state is State.READY

    assert server.receive_data(cancel, NOW) == [Cancel("r1")]
    assert "r1" not in server.streams
    # After the Cancel the server's own sends are dropped, not errors.
    assert server.send(part("r1", 3), NOW) == b""
    assert server.send(end("r1", 4), NOW) == b""
    assert server.send(Error("r1", "cancelled", ""), NOW) == b""

    # The other request is untouched.
    assert roundtrip(server, client, part("r2", 0)) == [part("r2", 0)]
    assert client.streams.open_ids() == ["r2"]


def test_cancel_of_a_finished_request_is_dropped() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(server, client, end("r1", 0))
    assert client.send(Cancel("r1"), NOW) == b""


def test_late_cancel_after_the_answer_ended_is_ignored_by_the_responder() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    cancel = client.send(Cancel("r1"), NOW)
    ending = server.send(end("r1", 0), NOW)
    assert server.receive_data(cancel, NOW) == []
    assert client.receive_data(ending, NOW) == []
    assert len(client.streams) == 0 and len(server.streams) == 0


def test_error_with_request_id_closes_only_that_request() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(client, server, request("r2"))
    error = Error("r1", "overloaded", "worker busy", True)
    assert roundtrip(server, client, error) == [error]
    assert client.streams.open_ids() == ["r2"]
    assert server.streams.open_ids() == ["r2"]
    assert client.state is State.READY
    assert roundtrip(server, client, end("r2", 0)) == [end("r2", 0)]


def test_error_without_request_id_closes_the_connection() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    with pytest.raises(PeerError) as failed:
        roundtrip(server, client, Error("", "shutting_down", "proxy restarts", True))
    assert failed.value.code == "shutting_down"
    assert failed.value.message == "proxy restarts"
    assert failed.value.retryable is True
    assert client.state is State.CLOSED
    assert client.receive_data(encode_frame(part("r1", 0)), NOW) == []
    with pytest.raises(LocalProtocolError):
        client.send(Ping(1), NOW)


def test_fail_tells_the_peer_why() -> None:
    client, server = ready_pair()
    goodbye = server.fail(RemoteProtocolError("you did wrong", "bad_thing"))
    assert server.state is State.CLOSED
    with pytest.raises(PeerError) as failed:
        client.receive_data(goodbye, NOW)
    assert failed.value.code == "bad_thing" and failed.value.message == "you did wrong"


def test_recently_closed_ids_are_forgotten_eventually() -> None:
    # Late frames are dropped only for the last few thousand closed ids; much
    # later, an answer for a long-closed id is a protocol error again.
    client, server = ready_pair()
    roundtrip(client, server, request("old"))
    client.send(Cancel("old"), NOW)
    for i in range(5000):
        roundtrip(client, server, request(f"r{i}"))
        roundtrip(server, client, end(f"r{i}", 0))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(encode_frame(part("old", 0)), NOW)


def test_a_send_that_fails_to_encode_leaves_the_request_unchanged() -> None:
    client, server = ready_pair(max_frame=4096)
    roundtrip(client, server, request("r1"))
    with pytest.raises(LocalProtocolError):
        server.send(part("r1", 0, b"x" * 8192), NOW)
    # The oversized part never left; the next part is still number 0.
    assert roundtrip(server, client, part("r1", 0, b"small")) == [part("r1", 0, b"small")]


def test_a_request_that_fails_to_encode_does_not_stay_open() -> None:
    client, _ = ready_pair(max_frame=4096)
    with pytest.raises(LocalProtocolError):
        client.send(request("r1", b"x" * 8192), NOW)
    assert "r1" not in client.streams


def test_malformed_frame_on_a_ready_connection_closes_it_with_a_reason() -> None:
    client, _ = ready_pair()
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data(b"\x00\x00\x00\x01\xc1", NOW)
    assert refused.value.code == "malformed_frame"
    assert client.state is State.CLOSED
    (error,) = FrameDecoder().feed(client.data_to_send())
    assert isinstance(error, Error) and error.code == "malformed_frame"


def test_oversized_frame_on_a_ready_connection_closes_it() -> None:
    client, _ = ready_pair(max_frame=4096)
    with pytest.raises(RemoteProtocolError) as refused:
        client.receive_data((1 << 20).to_bytes(4, "big"), NOW)
    assert refused.value.code == "frame_too_large"
    (error,) = FrameDecoder().feed(client.data_to_send())
    assert isinstance(error, Error) and error.code == "frame_too_large"


def test_invalid_utf8_from_the_peer_closes_the_connection_with_a_reason() -> None:
    client, _ = ready_pair()
    payload = b"\x94\xa5error\xa0\xa1c\xa2\xff\xfe"  # Error("", "c", <not UTF-8>)
    with pytest.raises(RemoteProtocolError):
        client.receive_data(len(payload).to_bytes(4, "big") + payload, NOW)
    assert client.state is State.CLOSED
    (error,) = FrameDecoder().feed(client.data_to_send())
    assert isinstance(error, Error) and error.code == "malformed_frame"


def test_a_retry_right_after_a_cancel_drops_the_earlier_runs_late_frames() -> None:
    """Issue 16: an app that goes away and retries at once reopens the id while the
    cancelled run's frames are still in flight; they are dropped, and neither the
    retry nor the other requests on the connection are cut."""
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    roundtrip(client, server, request("r2"))
    for i in range(3):
        roundtrip(server, client, part("r1", i))
    cancel = client.send(Cancel("r1"), NOW)
    retry = client.send(request("r1"), NOW)
    # Sent by the server before it saw the Cancel: parts 3 and 4 of the first run.
    late = server.send(part("r1", 3), NOW) + server.send(part("r1", 4), NOW)
    assert client.receive_data(late, NOW) == []
    assert client.state is State.READY
    assert server.receive_data(cancel + retry, NOW) == [Cancel("r1"), request("r1")]
    # The retry's own answer, from index 0, goes through.
    assert roundtrip(server, client, part("r1", 0)) == [part("r1", 0)]
    assert roundtrip(server, client, end("r1", 1)) == [end("r1", 1)]
    assert roundtrip(server, client, part("r2", 0)) == [part("r2", 0)]
    assert client.state is State.READY


def test_out_of_order_parts_of_a_fresh_request_still_close_the_connection() -> None:
    client, server = ready_pair()
    roundtrip(client, server, request("r1"))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(encode_frame(part("r1", 1)), NOW)
