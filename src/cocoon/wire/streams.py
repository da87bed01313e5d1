"""The life of one request on one connection, as a transition table.

Rules:
1. A request is opened by exactly one `Request` frame; its id must not be
   open already on this connection (in either direction).
2. The answering side sends zero or more `AnswerPart`s with consecutive
   indices from 0, then exactly one `AnswerEnd` (next index) or `Error`.
3. The requesting side may send `Cancel` at any time while the request is
   open; frames of a cancelled request that were already in flight are
   dropped, not treated as errors.
4. A requester may open an id it closed recently again (a retry). Frames of
   the earlier run may still be in flight then, and cannot be told from the
   new run's by their id: out of order, they are dropped rather than fatal
   for the connection (a retry right after a Cancel must not cut every other
   request on it). The sealed answer's own indices and receipts still check
   what reaches the application.
5. Everything that changes a request's state lives in this file.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

from ..recent import remember
from .errors import LocalProtocolError, RemoteProtocolError


class Side(enum.Enum):
    """Which end of the request this connection is."""

    REQUESTER = "requester"
    RESPONDER = "responder"


class StreamState(enum.Enum):
    """Where a request stands."""

    OPEN = "open"
    CANCELLED = "cancelled"


# How many recently closed ids we remember, so that late frames after a Cancel
# are dropped quietly instead of killing the connection.
_RECENT_LIMIT = 4096


class _Stream:
    __slots__ = ("next_index", "reopened", "side", "state")

    def __init__(self, side: Side, reopened: bool = False) -> None:
        self.side = side
        self.state = StreamState.OPEN
        self.next_index = 0
        # Opened again by the requester while its last run may still send (rule 4).
        self.reopened = reopened


class StreamTable:
    """Tracks every open request of one connection and checks each frame against the rules."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._streams

    def open_ids(self) -> list[str]:
        """Ids of the requests still open."""
        return list(self._streams)

    # -- frames we send ------------------------------------------------------

    def send_request(self, request_id: str) -> None:
        if request_id in self._streams:
            raise LocalProtocolError(f"request {request_id} is already open")
        self._streams[request_id] = _Stream(Side.REQUESTER, reopened=request_id in self._recent)

    def send_part(self, request_id: str, index: int) -> bool:
        """Check an outgoing AnswerPart; False means the request was cancelled: drop it."""
        stream = self._answering(request_id, local=True)
        if stream is None:
            return False
        if index != stream.next_index:
            raise LocalProtocolError(f"part {index} of {request_id}, expected {stream.next_index}")
        stream.next_index += 1
        return True

    def send_end(self, request_id: str, index: int | None = None) -> bool:
        """Check an outgoing AnswerEnd or Error; closes the request."""
        stream = self._answering(request_id, local=True)
        if stream is None:
            return False
        if index is not None and index != stream.next_index:
            raise LocalProtocolError(f"end {index} of {request_id}, expected {stream.next_index}")
        self._close(request_id)
        return True

    def send_cancel(self, request_id: str) -> bool:
        stream = self._streams.get(request_id)
        if stream is None or stream.side is not Side.REQUESTER:
            return False
        self._close(request_id)
        return True

    # -- frames we receive ---------------------------------------------------

    def receive_request(self, request_id: str) -> None:
        if request_id in self._streams:
            raise RemoteProtocolError(f"request {request_id} is already open", "duplicate_request")
        self._streams[request_id] = _Stream(Side.RESPONDER)

    def receive_part(self, request_id: str, index: int) -> bool:
        """Check an incoming AnswerPart; False means drop it (late frame of a closed request)."""
        stream = self._answering(request_id, local=False)
        if stream is None:
            return False
        if index != stream.next_index:
            if stream.reopened:
                return False  # the earlier run's, still in flight (rule 4)
            raise RemoteProtocolError(
                f"part {index} of {request_id}, expected {stream.next_index}", "out_of_order"
            )
        stream.next_index += 1
        return True

    def receive_end(self, request_id: str, index: int | None = None) -> bool:
        stream = self._answering(request_id, local=False)
        if stream is None:
            return False
        if index is not None and index != stream.next_index:
            if stream.reopened:
                return False  # the earlier run's, still in flight (rule 4)
            raise RemoteProtocolError(
                f"end {index} of {request_id}, expected {stream.next_index}", "out_of_order"
            )
        self._close(request_id)
        return True

    def receive_cancel(self, request_id: str) -> bool:
        stream = self._streams.get(request_id)
        if stream is None or stream.side is not Side.RESPONDER:
            return False
        self._close(request_id)
        return True

    # -- helpers -------------------------------------------------------------

    def _answering(self, request_id: str, *, local: bool) -> _Stream | None:
        stream = self._streams.get(request_id)
        answering_side = Side.RESPONDER if local else Side.REQUESTER
        if stream is None:
            if request_id in self._recent:
                return None
            error = LocalProtocolError if local else RemoteProtocolError
            raise error(f"no open request {request_id}")
        if stream.side is not answering_side:
            error = LocalProtocolError if local else RemoteProtocolError
            raise error(f"answer frame for {request_id} sent by the wrong side")
        return stream

    def _close(self, request_id: str) -> None:
        del self._streams[request_id]
        remember(self._recent, request_id, None, _RECENT_LIMIT)
