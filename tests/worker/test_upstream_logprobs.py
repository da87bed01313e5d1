"""The in-project upstream's deterministic logprobs: shaped as a model's are. No sockets."""

from __future__ import annotations

import math

import msgspec

from cocoon.inference import GenerationRequest
from cocoon.upstream_tools import asked_logprobs, token_logprob


def test_a_token_is_the_most_likely_and_a_position_sums_below_one() -> None:
    for token in ("Hello", " world", "!", "é"):
        entry = token_logprob(token, 5)
        assert entry == token_logprob(token, 5)  # deterministic
        tops = [top.logprob for top in entry.top]
        assert entry.top[0].token == token and entry.top[0].logprob == entry.logprob
        assert tops == sorted(tops, reverse=True) and len(set(tops)) == 5
        assert math.log(0.5) <= entry.logprob < math.log(0.9)
        assert sum(math.exp(t) for t in tops) < 1.0
        assert entry.raw == token.encode()
    assert token_logprob("a", 0).top == [] and len(token_logprob("a", 1).top) == 1
    assert token_logprob("a", 0).logprob != token_logprob("b", 0).logprob


def _request(kind: str, **extra: object) -> GenerationRequest:
    return msgspec.convert({"kind": kind, "model": "m", "extra": extra}, GenerationRequest)


def test_what_a_request_asks_for() -> None:
    assert asked_logprobs(_request("chat")) is None
    assert asked_logprobs(_request("chat", logprobs=False)) is None
    assert asked_logprobs(_request("chat", logprobs=True)) == 0
    assert asked_logprobs(_request("chat", logprobs=True, top_logprobs=4)) == 4
    assert asked_logprobs(_request("completion", logprobs=2)) == 2
