"""Server-sent events, decoded without I/O: feed bytes, get each event's data.

Only what OpenAI-compatible servers use: `data:` fields (several in one event
are joined with newlines, as the SSE spec says), events ended by a blank line,
comments and other fields ignored, LF or CRLF line ends.
"""

from __future__ import annotations


class SSEDecoder:
    """Turns a byte stream into the `data` payloads of its events."""

    def __init__(self) -> None:
        self._partial_line = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the data of the events they end."""
        lines = (self._partial_line + chunk).split(b"\n")
        self._partial_line = lines.pop()
        events: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events

    def close(self) -> list[bytes]:
        """End of stream: the data of an event that was not ended by a blank line."""
        events = self.feed(b"\n\n") if self._partial_line or self._data else []
        self._partial_line = b""
        return events
