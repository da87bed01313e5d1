"""The client's errors: what a request ran into, in the wire's error codes."""

from __future__ import annotations


class ProxyLost(Exception):
    """The proxy went away before the answer's first chunk: another proxy may take it."""


class ClientError(Exception):
    """A request failed; `code` follows the wire's error codes."""

    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
