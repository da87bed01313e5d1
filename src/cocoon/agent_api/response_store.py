"""The client node's memory of recent responses, for `previous_response_id`.

Only the client may hold a conversation (it alone sees plaintext), so the
store lives in the client node, in memory, bounded: the oldest response is
forgotten first, and a conversation too large to keep whole is not kept.
A response id that is unknown (forgotten, or from another node) is a 404 for
the app, never a silent fresh start.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import msgspec

# Responses kept, and the largest conversation kept for one (encoded bytes).
MAX_RESPONSES = 1024
MAX_CONVERSATION_BYTES = 1 << 20


@dataclass(frozen=True)
class StoredResponse:
    """A finished response: the Response object, and its conversation as chat messages."""

    response: dict[str, Any]
    conversation: list[dict[str, Any]]


class ResponseStore:
    """Recent responses by id, least recently stored first out."""

    def __init__(
        self, max_responses: int = MAX_RESPONSES, max_bytes: int = MAX_CONVERSATION_BYTES
    ) -> None:
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        self._responses: collections.OrderedDict[str, StoredResponse] = collections.OrderedDict()

    def put(self, response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
        if len(msgspec.json.encode(conversation)) > self.max_bytes:
            return
        self._responses[response["id"]] = StoredResponse(response, conversation)
        self._responses.move_to_end(response["id"])
        while len(self._responses) > self.max_responses:
            self._responses.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        return self._responses.get(response_id)

    def __len__(self) -> int:
        return len(self._responses)
