"""The client node's memory of recent responses, for `previous_response_id`.

Only the client may hold a conversation (it alone sees plaintext), so the
store lives in the client node, in memory, bounded three ways: at most
`max_responses` responses, at most `max_bytes` for one (the Response object
and its conversation, encoded), and at most `budget_bytes` for all of them
together; past either total the oldest is forgotten first, and a response too
large to keep is not kept. A response id that is unknown (forgotten, or from
another node) is a 404 for the app, never a silent fresh start.

Entries are kept encoded (JSON bytes) and decoded on each read: the budget
is then the memory they take (decoded, a conversation's dicts and strings
took 3-5 times its JSON size), and a read costs a few milliseconds at most.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import msgspec

# Responses kept, the largest one kept (encoded bytes), and all of them together.
MAX_RESPONSES = 1024
MAX_CONVERSATION_BYTES = 1 << 20
STORE_BUDGET_BYTES = 64 << 20


@dataclass(frozen=True)
class StoredResponse:
    """A finished response: the Response object, and its conversation as chat messages."""

    response: dict[str, Any]
    conversation: list[dict[str, Any]]


class _Entry(msgspec.Struct, array_like=True):
    response: dict[str, Any]
    conversation: list[dict[str, Any]]


_decoder = msgspec.json.Decoder(_Entry)


class ResponseStore:
    """Recent responses by id, least recently stored first out, within a byte budget."""

    def __init__(
        self,
        max_responses: int = MAX_RESPONSES,
        max_bytes: int = MAX_CONVERSATION_BYTES,
        budget_bytes: int = STORE_BUDGET_BYTES,
    ) -> None:
        self.max_responses = max_responses
        self.max_bytes = min(max_bytes, budget_bytes)
        self.budget_bytes = budget_bytes
        self._responses: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.bytes = 0

    def put(self, response: dict[str, Any], conversation: list[dict[str, Any]]) -> bool:
        """Keep a response; False when it is too large to keep."""
        encoded = msgspec.json.encode(_Entry(response, conversation))
        if len(encoded) > self.max_bytes:
            return False
        self._drop(response["id"])
        self._responses[response["id"]] = encoded
        self.bytes += len(encoded)
        while len(self._responses) > self.max_responses or self.bytes > self.budget_bytes:
            _, dropped = self._responses.popitem(last=False)
            self.bytes -= len(dropped)
        return True

    def get(self, response_id: str) -> StoredResponse | None:
        encoded = self._responses.get(response_id)
        if encoded is None:
            return None
        entry = _decoder.decode(encoded)
        return StoredResponse(entry.response, entry.conversation)

    def _drop(self, response_id: str) -> None:
        old = self._responses.pop(response_id, None)
        if old is not None:
            self.bytes -= len(old)

    def __len__(self) -> int:
        return len(self._responses)
