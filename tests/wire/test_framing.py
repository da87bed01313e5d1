"""Frames: every message survives encoding and any chunking; bad input is the peer's fault."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cocoon.wire.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from cocoon.wire.framing import FrameDecoder, decode_message, encode_frame
from cocoon.wire.messages import (
    AnswerEnd,
    AnswerPart,
    AuthOk,
    AuthProof,
    Cancel,
    Directory,
    DirectoryRequest,
    Error,
    Hello,
    HelloAck,
    Message,
    Ping,
    Pong,
    Request,
    WorkerAnnounce,
    WorkerEntry,
    WorkerLoad,
)

EVERY_MESSAGE: list[Message] = [
    Hello(1, 0, "client", "testnet", b"n" * 32, b"certificate"),
    HelloAck(1, 3, "proxy", "testnet", b"s" * 32),
    AuthProof(b"x" * 64),
    AuthOk(),
    Ping(7),
    Pong(7),
    WorkerAnnounce(["qwen", "llama"], 1500, 8),
    WorkerLoad(3, 1),
    DirectoryRequest(1, ""),
    Directory(1, [WorkerEntry("ab" * 8, b"cert", ["qwen"], 1000, 4, 2)]),
    Directory(2, []),
    Request("r1", "qwen", 2000, 512, 30_000, ["k1", "k2"], b"\x00sealed\xff"),
    AnswerPart("r1", 0, b"chunk"),
    AnswerPart("r1", 1, b"chunk", b"partial receipt"),
    AnswerEnd("r1", 2, b"final", b"receipt"),
    Error("r1", "overloaded", "try later", True),
    Error("", "protocol_error", "bye"),
    Cancel("r1"),
]


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _every_message_ids() -> list[str]:
    return [f"{i}-{type(m).__name__}" for i, m in enumerate(EVERY_MESSAGE)]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=_every_message_ids())
def test_every_message_roundtrips(message: Message) -> None:
    data = encode_frame(message)
    (size,) = struct.unpack(">I", data[:4])
    assert size == len(data) - 4
    assert decode_message(data[4:]) == message
    assert FrameDecoder().feed(data) == [message]


def test_all_messages_in_one_stream_split_at_every_byte() -> None:
    stream = b"".join(encode_frame(m) for m in EVERY_MESSAGE)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        messages = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert messages == EVERY_MESSAGE, f"cut at {cut}"
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    stream = b"".join(encode_frame(m) for m in EVERY_MESSAGE)
    decoder = FrameDecoder()
    messages: list[Message] = []
    for i in range(len(stream)):
        messages += decoder.feed(stream[i : i + 1])
    assert messages == EVERY_MESSAGE


def test_incomplete_frame_is_buffered_not_returned() -> None:
    data = encode_frame(Ping(1))
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.buffered == len(data) - 1
    assert decoder.feed(data[-1:]) == [Ping(1)]
    assert decoder.buffered == 0


def test_oversized_frame_refused_from_its_header_alone() -> None:
    decoder = FrameDecoder(max_frame=1024)
    # Only the length prefix: the decoder must not wait for (or buffer) 1 MiB.
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(struct.pack(">I", 1024 * 1024))
    assert info.value.code == "frame_too_large"
    assert isinstance(info.value, RemoteProtocolError)


def test_frame_at_the_limit_is_accepted() -> None:
    message = AnswerPart("r", 0, b"x" * 100)
    data = encode_frame(message)
    assert FrameDecoder(max_frame=len(data) - 4).feed(data) == [message]
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_frame=len(data) - 5).feed(data)


def test_encoding_an_oversized_frame_is_our_fault() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(AnswerPart("r", 0, b"x" * 2000), max_frame=1024)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\xff\xff\xff",
        msgspec.msgpack.encode(["nope", 1]),  # unknown tag
        msgspec.msgpack.encode({"t": "ping", "seq": 1}),  # a map, not an array
        msgspec.msgpack.encode(["ping"]),  # missing field
        msgspec.msgpack.encode(["ping", "one"]),  # wrong type
        msgspec.msgpack.encode(["part", "r", 0]),
        encode_frame(Ping(1))[4:] + b"\x00",  # trailing garbage
        b"\x92\xa5error\xc4",  # truncated
    ],
)
def test_garbage_payload_is_a_remote_protocol_error(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        FrameDecoder().feed(frame(payload))
    assert info.value.code == "malformed_frame"
    assert not isinstance(info.value, msgspec.MsgspecError)


def test_trailing_fields_from_a_newer_minor_version_are_ignored() -> None:
    # messages.py: adding a field at the end is a minor change, so an older
    # node must accept a frame that carries one more field than it knows.
    newer = msgspec.msgpack.encode(["ping", 1, "field added in 1.1"])
    assert FrameDecoder().feed(frame(newer)) == [Ping(1)]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x91\xa2\x00\x80",  # the tag itself is not UTF-8
        b"\x94\xa5error\xa1r\xa1c\xa2\xff\xfe",  # Error.message is not UTF-8
        b"\x92\xa6cancel\xa1\xc3",  # truncated UTF-8 sequence in request_id
    ],
    ids=["tag", "error-message", "request-id"],
)
def test_invalid_utf8_in_a_string_is_a_remote_protocol_error(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_message(payload)


@example(b"\x91\xa2\x00\x80")
@given(st.binary(max_size=200))
def test_arbitrary_payload_decodes_or_fails_cleanly(payload: bytes) -> None:
    try:
        FrameDecoder().feed(frame(payload))
    except RemoteProtocolError as error:
        assert error.code == "malformed_frame"


_TAGS = ["hello", "hello_ack", "auth", "auth_ok", "ping", "pong", "announce", "load"]
_TAGS += ["dir_req", "dir", "req", "part", "end", "error", "cancel", "unknown"]
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.sampled_from(_TAGS), st.lists(_values, max_size=8))
def test_wellformed_msgpack_of_any_shape_decodes_or_fails_cleanly(
    tag: str, fields: list[object]
) -> None:
    # Valid msgpack, valid UTF-8, any shape: only RemoteProtocolError may escape.
    try:
        FrameDecoder().feed(frame(msgspec.msgpack.encode([tag, *fields])))
    except RemoteProtocolError as error:
        assert error.code == "malformed_frame"


_parts = st.lists(
    st.builds(
        AnswerPart,
        request_id=st.text(max_size=20),
        index=st.integers(min_value=0, max_value=2**63 - 1),
        sealed=st.binary(max_size=300),
        receipt=st.none() | st.binary(max_size=50),
    ),
    max_size=20,
)


@given(_parts, st.data())
def test_answer_parts_survive_arbitrary_chunking(
    parts: list[AnswerPart], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(p) for p in parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder = FrameDecoder()
    received: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        received += decoder.feed(stream[start:cut])
        start = cut
    assert received == parts
    assert decoder.buffered == 0
