"""Tool calls and logprobs in the OpenAI answer shapes, whole and streamed. Sans-IO.

A worker sends tool calls in pieces (`ToolCallDelta`: id and name once, the
arguments in fragments, as an upstream server streams them) and log
probabilities per sampled token (`TokenLogprob`). The gateway joins them into
a whole answer's `message.tool_calls` / `choices[0].logprobs`, or writes each
chunk that carries them as one server-sent event. Chunks of plain text keep
the `ChunkFormatter` fast path; only these go through here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cocoon.inference import AnswerChunk, TokenLogprob, ToolCallDelta

_json = msgspec.json.Encoder().encode


class ToolCallAssembler:
    """Joins the pieces of an answer's tool calls, by index, in arrival order."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def feed(self, deltas: list[ToolCallDelta]) -> None:
        for delta in deltas:
            call = self._calls.setdefault(
                delta.index,
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if delta.id:
                call["id"] = delta.id
            if delta.name:
                call["function"]["name"] += delta.name
            call["function"]["arguments"] += delta.arguments

    def calls(self) -> list[dict[str, Any]]:
        """The calls, in index order, as a chat message's `tool_calls`."""
        return [self._calls[index] for index in sorted(self._calls)]


def _top(entry: TokenLogprob) -> list[dict[str, Any]]:
    return [
        {"token": top.token, "logprob": top.logprob, "bytes": list(top.raw)} for top in entry.top
    ]


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """`choices[0].logprobs` of a chat answer (and of one streamed chunk)."""
    content = [
        {
            "token": entry.token,
            "logprob": entry.logprob,
            "bytes": list(entry.raw),
            "top_logprobs": _top(entry),
        }
        for entry in entries
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(entries: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """`choices[0].logprobs` of a completion: parallel lists, text offsets from ``offset``."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{top.token: top.logprob for top in entry.top} for entry in entries],
        "text_offset": offsets,
    }


def complete_answer(
    body: dict[str, Any],
    calls: list[dict[str, Any]],
    entries: list[TokenLogprob] | None,
) -> None:
    """Put tool calls and logprobs (None: not asked) into a whole answer's first choice."""
    choice = body["choices"][0]
    if calls:
        message = choice["message"]
        message["tool_calls"] = calls
        if not message["content"]:
            message["content"] = None
    if entries is not None:
        chat = body["object"] == "chat.completion"
        choice["logprobs"] = chat_logprobs(entries) if chat else completion_logprobs(entries)


class AgentEvents:
    """The SSE events of streamed chunks that carry tool calls or logprobs."""

    def __init__(self, head: bytes, chat: bool) -> None:
        # `head`: the constant start of every event of this answer (ChunkFormatter.head).
        self.head = head
        self.chat = chat
        self._offset = 0
        self._started: set[int] = set()

    def event(self, chunk: AnswerChunk) -> bytes:
        """One event for a chunk's text, tool call pieces and logprobs."""
        logprobs: Any = None
        if chunk.logprobs:
            if self.chat:
                logprobs = chat_logprobs(chunk.logprobs)
            else:
                logprobs = completion_logprobs(chunk.logprobs, self._offset)
                self._offset += sum(len(entry.token) for entry in chunk.logprobs)
        if not self.chat:
            choice: dict[str, Any] = {"index": 0, "text": chunk.text}
        else:
            delta: dict[str, Any] = {}
            if chunk.text:
                delta["content"] = chunk.text
            if chunk.tool_calls:
                delta["tool_calls"] = [self._call(piece) for piece in chunk.tool_calls]
            choice = {"index": 0, "delta": delta}
        choice.update(logprobs=logprobs, finish_reason=None)
        return self.head + b'"choices":[' + _json(choice) + b"]}\n\n"

    def _call(self, piece: ToolCallDelta) -> dict[str, Any]:
        # OpenAI's shape: the first piece of a call names it (id, type, name),
        # the rest carry arguments only; the SDKs join them by index.
        function: dict[str, Any] = {"arguments": piece.arguments}
        call: dict[str, Any] = {"index": piece.index}
        if piece.index not in self._started:
            self._started.add(piece.index)
            call.update(id=piece.id, type="function")
            function["name"] = piece.name
        elif piece.name:
            function["name"] = piece.name
        call["function"] = function
        return call
