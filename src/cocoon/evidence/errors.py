"""Why an evidence bundle is refused: one error type, its reason a short code."""

from __future__ import annotations


class BundleError(Exception):
    """An evidence bundle does not verify; `reason` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
