"""Frames: a 4-byte big-endian length, then one msgpack-encoded message."""

from __future__ import annotations

import struct

import msgspec

from .errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from .messages import Message

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
_LENGTH = struct.Struct(">I")

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode_frame(message: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Encode one message as a length-prefixed frame."""
    buffer = bytearray(4)
    _encoder.encode_into(message, buffer, 4)
    size = len(buffer) - 4
    if size > max_frame:
        raise LocalProtocolError(f"frame of {size} bytes exceeds the limit of {max_frame}")
    _LENGTH.pack_into(buffer, 0, size)
    return bytes(buffer)


def decode_message(payload: bytes | memoryview) -> Message:
    """Decode one frame's payload, turning any decoding failure into a RemoteProtocolError."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, ValueError) as exc:
        # ValueError: msgspec raises UnicodeDecodeError for bad UTF-8 in strings.
        raise RemoteProtocolError(f"malformed frame: {exc}", "malformed_frame") from exc


class FrameDecoder:
    """Cuts a byte stream into message frames; never buffers more than one frame plus a read."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message now complete, in order."""
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        offset = 0
        end = len(buffer)
        with memoryview(buffer) as view:
            while end - offset >= 4:
                (size,) = _LENGTH.unpack_from(buffer, offset)
                if size > self.max_frame:
                    raise FrameTooLarge(size, self.max_frame)
                if end - offset - 4 < size:
                    break
                start = offset + 4
                messages.append(decode_message(view[start : start + size]))
                offset = start + size
        if offset:
            del buffer[:offset]
        return messages

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)
