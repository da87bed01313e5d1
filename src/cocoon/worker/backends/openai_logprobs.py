"""Log probabilities in a model server's OpenAI answers: what we read of them, and
the `TokenLogprob`s they become (chat's per-token entries with their raw bytes;
completions' parallel lists, their alternatives best first)."""

from __future__ import annotations

import msgspec

from cocoon.inference import TokenLogprob, TopLogprob


class TopLogprobJSON(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None


class LogprobEntryJSON(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprobJSON] = []


class ChatLogprobs(msgspec.Struct):
    content: list[LogprobEntryJSON] | None = None


class TextLogprobs(msgspec.Struct):
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] | None = None


def _raw(token: str, given: list[int] | None) -> bytes:
    try:
        return bytes(given) if given is not None else token.encode("utf-8")
    except ValueError:  # a server's "bytes" outside 0-255
        return token.encode("utf-8")


def chat_logprobs(logprobs: ChatLogprobs | None) -> list[TokenLogprob]:
    if logprobs is None or not logprobs.content:
        return []
    return [
        TokenLogprob(
            entry.token,
            entry.logprob,
            _raw(entry.token, entry.bytes),
            [TopLogprob(t.token, t.logprob, _raw(t.token, t.bytes)) for t in entry.top_logprobs],
        )
        for entry in logprobs.content
    ]


def text_logprobs(logprobs: TextLogprobs | None) -> list[TokenLogprob]:
    if logprobs is None:
        return []
    tops = logprobs.top_logprobs or []
    entries = []
    for index, (token, value) in enumerate(
        zip(logprobs.tokens, logprobs.token_logprobs, strict=False)
    ):
        top = tops[index] if index < len(tops) else None
        best = sorted((top or {}).items(), key=lambda item: -item[1])
        entries.append(
            TokenLogprob(
                token,
                value if value is not None else 0.0,
                token.encode("utf-8"),
                [TopLogprob(t, v, t.encode("utf-8")) for t, v in best],
            )
        )
    return entries
