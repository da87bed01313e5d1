"""The Responses API's typed event stream, from a chat answer's chunks. Sans-IO.

Each event is `event: <type>` and `data: <json>` with a `sequence_number`, in
the order OpenAI sends them: response.created and .in_progress; per output
item .output_item.added, then for a message .content_part.added, the
.output_text.delta events, .output_text.done and .content_part.done, for a
function call .function_call_arguments.delta/.done; .output_item.done; and
last response.completed (or .incomplete) with the whole Response and usage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from cocoon.agent_api.answers import ToolCallAssembler, chat_logprobs
from cocoon.agent_api.responses import call_item, item_status, message_item, text_part
from cocoon.inference import AnswerChunk, Usage

_json = msgspec.json.Encoder().encode

# (finish_reason, usage, output) -> the Response object.
ResponseBuilder = Callable[[str | None, Usage | None, list[dict[str, Any]]], dict[str, Any]]


class ResponseEvents:
    """Turns one answer's chunks into Responses API events."""

    def __init__(self, build: ResponseBuilder, logprobs: bool = False) -> None:
        self._build = build
        # The output text's logprobs so far; None: not asked for.
        self._logprobs: list[dict[str, Any]] | None = [] if logprobs else None
        self._sequence = 0
        self.output: list[dict[str, Any]] = []
        self._message: dict[str, Any] | None = None
        self._text: list[str] = []
        self._calls = ToolCallAssembler()
        # Per call index: its output item, and its position in `output`.
        self._call_items: dict[int, tuple[dict[str, Any], int]] = {}

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + _json(body) + b"\n\n"

    def start(self) -> bytes:
        response = self._build(None, None, [])
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def feed(self, chunk: AnswerChunk) -> bytes:
        events = b""
        if chunk.text:
            if self._message is None:
                self._message = message_item("", status="in_progress")
                self.output.append(self._message)
                index = len(self.output) - 1
                events += self._event(
                    "response.output_item.added", output_index=index, item=self._message
                )
                events += self._event(
                    "response.content_part.added",
                    item_id=self._message["id"],
                    output_index=index,
                    content_index=0,
                    part=text_part("", [] if self._logprobs is not None else None),
                )
            self._text.append(chunk.text)
            delta_logprobs = self._delta_logprobs(chunk)
            events += self._event(
                "response.output_text.delta",
                item_id=self._message["id"],
                output_index=self.output.index(self._message),
                content_index=0,
                delta=chunk.text,
                logprobs=delta_logprobs,
            )
        elif self._message is not None:
            self._delta_logprobs(chunk)  # a last token's logprob without text of its own
        self._calls.feed(chunk.tool_calls)
        calls = self._calls.calls()
        for piece in chunk.tool_calls:
            if piece.index not in self._call_items:
                whole = next(c for c in calls if c["id"] == piece.id) if piece.id else calls[-1]
                item = call_item({**whole, "function": {**whole["function"], "arguments": ""}})
                item["status"] = "in_progress"
                self.output.append(item)
                self._call_items[piece.index] = (item, len(self.output) - 1)
                events += self._event(
                    "response.output_item.added", output_index=len(self.output) - 1, item=item
                )
            item, index = self._call_items[piece.index]
            if piece.arguments:
                item["arguments"] += piece.arguments
                events += self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=piece.arguments,
                )
        return events

    def _delta_logprobs(self, chunk: AnswerChunk) -> list[dict[str, Any]]:
        if self._logprobs is None or not chunk.logprobs:
            return []
        entries: list[dict[str, Any]] = chat_logprobs(chunk.logprobs)["content"]
        self._logprobs.extend(entries)
        return entries

    def finish(self, finish_reason: str, usage: Usage) -> bytes:
        events = b""
        if self._message is not None:
            index = self.output.index(self._message)
            text = "".join(self._text)
            part = text_part(text, self._logprobs)
            self._message.update(status=item_status(finish_reason), content=[part])
            events += self._event(
                "response.output_text.done",
                item_id=self._message["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=self._logprobs or [],
            )
            events += self._event(
                "response.content_part.done",
                item_id=self._message["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            events += self._event(
                "response.output_item.done", output_index=index, item=self._message
            )
        for item, index in self._call_items.values():
            item["status"] = "completed"
            events += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
            events += self._event("response.output_item.done", output_index=index, item=item)
        response = self._build(finish_reason, usage, self.output)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return events + self._event(kind, response=response)
