"""Errors of the wire layer: whose fault it was is part of the type."""

from __future__ import annotations


class WireError(Exception):
    """Base of every wire-layer error."""


class ProtocolError(WireError):
    """The protocol was broken; `code` is sent to the peer in an Error frame."""

    def __init__(self, message: str, code: str = "protocol_error") -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol forbids (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class VersionMismatch(RemoteProtocolError):
    """The peer speaks a major protocol version we do not."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="version_mismatch")


class AuthenticationError(RemoteProtocolError):
    """The peer failed to prove its identity or was refused by policy."""

    def __init__(self, message: str, reason: str = "unauthorized") -> None:
        # The reason leads the message so that the refused side learns it too.
        super().__init__(f"refused ({reason}): {message}", code="unauthorized")
        self.reason = reason


class FrameTooLarge(RemoteProtocolError):
    """A frame's declared length exceeds the agreed maximum."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit}", "frame_too_large")


class ConnectionClosed(WireError):
    """The connection is closed; no more frames can be sent or received."""


class PeerError(WireError):
    """The peer answered a request with an Error frame."""

    def __init__(self, code: str, message: str, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
