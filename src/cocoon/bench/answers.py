"""One request of the load generator, timed: its body, and what is read of its answer.

Timing: `time.perf_counter()` on arrival of each read from the socket. A
streamed token is an SSE event with text; its arrival time is the time of the
read that completed it, so tokens that arrive in one read have a gap of 0,
which is what the application would see too. An answer of many tokens that
came in one read arrived whole: the server did not stream it (`whole_share`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiohttp
import msgspec

from .plan import RequestShape


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Usage(msgspec.Struct):
    completion_tokens: int = 0


class _Event(msgspec.Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: dict[str, object] | None = None


class _Whole(msgspec.Struct):
    usage: _Usage | None = None


_event_decoder = msgspec.json.Decoder(_Event)
_whole_decoder = msgspec.json.Decoder(_Whole)


@dataclass
class Outcome:
    """One answer: when it started and ended, its first token and token gaps."""

    started: float
    ended: float = 0.0
    tokens: int = 0
    first_token: float | None = None
    gaps: list[float] = field(default_factory=list)
    # Network reads that brought text: 1 for an answer of many tokens means
    # it arrived whole, its first token with its last (not streamed).
    text_reads: int = 0
    error: str | None = None


def request_body(shape: RequestShape, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": shape.model,
        "messages": [{"role": "user", "content": shape.prompt}],
        "max_tokens": shape.max_tokens,
        "stream": stream,
    }
    if shape.temperature is not None:
        body["temperature"] = shape.temperature
    if stream:
        body["stream_options"] = {"include_usage": True}
    return msgspec.json.encode(body)


async def read_plain(session: aiohttp.ClientSession, url: str, body: bytes) -> Outcome:
    outcome = Outcome(time.perf_counter())
    async with session.post(url, data=body) as response:
        data = await response.read()
        outcome.ended = time.perf_counter()
        if response.status != 200:
            outcome.error = f"HTTP {response.status}: {data[:200]!r}"
            return outcome
    whole = _whole_decoder.decode(data)
    outcome.tokens = whole.usage.completion_tokens if whole.usage else 0
    return outcome


async def read_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> Outcome:
    outcome = Outcome(time.perf_counter())
    async with session.post(url, data=body) as response:
        if response.status != 200:
            data = await response.read()
            outcome.ended = time.perf_counter()
            outcome.error = f"HTTP {response.status}: {data[:200]!r}"
            return outcome
        pending = b""
        done = False
        # Tokens: the usage event's count; without one, one per event with text
        # (a server may put several tokens in one event).
        usage: int | None = None
        events_with_text = 0
        last = 0.0
        gaps = outcome.gaps
        async for data in response.content.iter_any():
            now = time.perf_counter()
            read_text = False
            events = (pending + data).split(b"\n\n")
            pending = events.pop()
            for event in events:
                if not event.startswith(b"data: "):
                    continue
                payload = event[6:]
                if payload == b"[DONE]":
                    done = True
                    continue
                decoded = _event_decoder.decode(payload)
                if decoded.error is not None:
                    outcome.error = f"error event: {payload[:200]!r}"
                    continue
                if decoded.usage is not None:
                    usage = decoded.usage.completion_tokens
                if not decoded.choices:
                    continue
                choice = decoded.choices[0]
                text = choice.delta.content if choice.delta is not None else choice.text
                if not text:
                    continue
                events_with_text += 1
                read_text = True
                if outcome.first_token is None:
                    outcome.first_token = now
                else:
                    gaps.append(now - last)
                last = now
            outcome.text_reads += read_text
        outcome.ended = time.perf_counter()
        outcome.tokens = usage if usage is not None else events_with_text
        if not done and outcome.error is None:
            outcome.error = "stream ended without [DONE]"
    return outcome


def whole_share(outcomes: list[Outcome]) -> float | None:
    """Of the streamed answers of more than one token, the share whose text came
    in one network read; None if there were none."""
    many = [o for o in outcomes if o.tokens > 1]
    if not many:
        return None
    return sum(o.text_reads == 1 for o in many) / len(many)
