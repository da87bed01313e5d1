"""Sans-IO pieces of the openai backend: the SSE decoder, stream state, error mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.openai import StreamState, error_from_upstream
from cocoon.worker.backends.sse import SSEDecoder


def test_sse_events_split_anywhere() -> None:
    stream = b'data: {"a":1}\n\n: keep-alive comment\n\ndata: {"b":2}\r\n\r\ndata: [DONE]\n\n'
    for size in (1, 2, 3, 7, len(stream)):
        decoder = SSEDecoder()
        events: list[bytes] = []
        for start in range(0, len(stream), size):
            events += decoder.feed(stream[start : start + size])
        events += decoder.close()
        assert events == [b'{"a":1}', b'{"b":2}', b"[DONE]"]


def test_sse_multiline_data_and_other_fields() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"event: message\nid: 4\ndata: first\ndata:second\n\n")
    assert events == [b"first\nsecond"]


def test_sse_unterminated_last_event_is_delivered_on_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.close() == [b"tail"]
    assert decoder.close() == []


def test_stream_state_reads_chat_deltas_finish_and_usage() -> None:
    state = StreamState("chat")
    assert state.take(b'{"choices":[{"index":0,"delta":{"role":"assistant"}}]}') == ""
    assert state.take(b'{"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}') == "Hi"
    assert state.take(b'{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}') == ""
    usage = (
        b'{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,'
        b'"prompt_tokens_details":{"cached_tokens":4},'
        b'"completion_tokens_details":{"reasoning_tokens":2}}}'
    )
    assert state.take(usage) == ""
    final = state.final_chunk()
    assert final.text == "" and final.finish_reason == "length"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (9, 1)
    assert (final.usage.cached_prompt_tokens, final.usage.reasoning_tokens) == (4, 2)


def test_stream_state_without_usage_counts_deltas() -> None:
    state = StreamState("completion")
    for word in ("a", " b", " c"):
        state.take(b'{"choices":[{"text":"%s"}]}' % word.encode())
    final = state.final_chunk()
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (0, 3)


def test_stream_state_rejects_bad_events() -> None:
    with pytest.raises(BackendError) as raised:
        StreamState("chat").take(b"{not json")
    assert raised.value.code == "upstream_error"
    with pytest.raises(BackendError) as raised:
        StreamState("chat").take(b'{"error":{"message":"engine died","code":500}}')
    assert "engine died" in raised.value.message


def test_openai_error_code_passes_through() -> None:
    body = (
        b'{"error":{"message":"too long","type":"invalid_request_error",'
        b'"code":"context_length_exceeded"}}'
    )
    error = error_from_upstream(400, body)
    assert (error.code, error.message, error.status, error.retryable) == (
        "context_length_exceeded",
        "too long",
        400,
        False,
    )


def test_vllm_errors_with_numeric_codes() -> None:
    nested = (
        b'{"error":{"message":"This model\'s maximum context length is 2048 tokens.",'
        b'"type":"BadRequestError","code":400}}'
    )
    assert error_from_upstream(400, nested).code == "context_length_exceeded"
    flat = (
        b'{"object":"error","message":"The model `x` does not exist.",'
        b'"type":"NotFoundError","code":404}'
    )
    error = error_from_upstream(404, flat)
    assert (error.code, error.status) == ("model_not_found", 404)
    assert error_from_upstream(422, b'{"error":"bad field"}').code == "invalid_request"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_side_failures_are_retryable(status: int) -> None:
    error = error_from_upstream(status, b"<html>overloaded</html>")
    assert (error.code, error.status, error.retryable) == ("upstream_unavailable", 502, True)
    assert "overloaded" in error.message


def test_bad_worker_credentials_are_not_the_callers_fault() -> None:
    error = error_from_upstream(401, b'{"error":{"message":"bad key","code":"invalid_api_key"}}')
    assert (error.code, error.status, error.retryable) == ("upstream_error", 502, False)


def _events_line_by_line(stream: bytes) -> list[bytes]:
    """The SSE rules read one line at a time: what the decoder's fast path must agree with."""
    events, data = [], []
    for line in stream.split(b"\n"):
        line = line.removesuffix(b"\r")
        if not line:
            if data:
                events.append(b"\n".join(data))
            data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value.removeprefix(b" "))
    return events


_PIECES = st.sampled_from(
    [b"data: ", b"data:", b"{}", b"x", b" ", b"\n", b"\n\n", b"\r\n", b": c", b"id: 1", b"[DONE]"]
)


@given(pieces=st.lists(_PIECES, max_size=40), cuts=st.lists(st.integers(1, 9), max_size=40))
def test_sse_decoding_agrees_with_reading_line_by_line(
    pieces: list[bytes], cuts: list[int]
) -> None:
    _agrees(b"".join(pieces), cuts)


# Whole events in one read, as a fast server's burst arrives: the decoder cuts
# those out in one split where every event is one `data: ` line.
_EVENTS = st.sampled_from([b"data: {}\n\n", b"data: x y\n\n", b"data: [DONE]\n\n"])


@given(
    events=st.lists(st.one_of(_EVENTS, _PIECES), max_size=60),
    cuts=st.lists(st.integers(1, 200), max_size=10),
)
def test_sse_reads_of_many_events_agree_with_reading_line_by_line(
    events: list[bytes], cuts: list[int]
) -> None:
    _agrees(b"".join(events), cuts)


def _agrees(stream: bytes, cuts: list[int]) -> None:
    decoder = SSEDecoder()
    events: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        events += decoder.feed(stream[start : start + cut])
        start += cut
    events += decoder.feed(stream[start:])
    events += decoder.close()
    assert events == _events_line_by_line(stream + b"\n\n")


def test_one_reads_events_are_read_at_once_text_runs_joined() -> None:
    state = StreamState("chat")
    call = (
        b'{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1",'
        b'"function":{"name":"f","arguments":"{}"}}]}}]}'
    )
    events = [
        b'{"choices":[{"delta":{"role":"assistant"}}]}',
        b'{"choices":[{"delta":{"content":"a"}}]}',
        b'{"choices":[{"delta":{"content":"b"}}]}',
        call,
        b'{"choices":[{"delta":{"content":"c"}}]}',
        b'{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}',
    ]
    batch = state.take_chunks(events)
    assert [(c.text, [t.name for t in c.tool_calls]) for c in batch] == [
        ("ab", []),
        ("", ["f"]),
        ("c", []),
    ]
    assert state.deltas == 4 and state.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "bad",
    [
        b"{not json",
        # Two objects in one event: joined with the others they would read as one more.
        b'{"choices":[]},{"choices":[]}',
    ],
)
def test_a_malformed_event_among_others_is_named(bad: bytes) -> None:
    events = [b'{"choices":[{"delta":{"content":"a"}}]}', bad]
    with pytest.raises(BackendError, match="malformed event") as raised:
        StreamState("chat").take_chunks(events)
    assert raised.value.code == "upstream_error"


def test_an_error_event_among_others_fails_the_stream() -> None:
    events = [
        b'{"choices":[{"text":"a"}]}',
        b'{"error":{"message":"engine died","code":500}}',
    ]
    with pytest.raises(BackendError, match="engine died"):
        StreamState("completion").take_chunks(events)


_CHAT_EVENTS = [
    b'{"choices":[{"delta":{"role":"assistant"}}]}',
    b'{"choices":[{"delta":{"content":"a"}}]}',
    b'{"choices":[{"delta":{"content":""}}]}',
    b'{"choices":[{"delta":{"content":null}}]}',
    b'{"choices":[{"index":0,"delta":{"content":" b"},"logprobs":null}]}',
    b'{"choices":[{"delta":{"content":"c"},"finish_reason":"stop"}]}',
    b'{"choices":[{"delta":{"content":"d"}},{"delta":{"content":"other"}}]}',
    b'{"choices":[{"delta":{"content":"e"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}',
    b'{"choices":[{"delta":{"content":"f","tool_calls":[{"index":0,"id":"c1",'
    b'"function":{"name":"g","arguments":"{}"}}]}}]}',
    b'{"choices":[{"delta":{"content":"h"},"logprobs":{"content":[{"token":"h",'
    b'"logprob":-0.5,"top_logprobs":[]}]}}]}',
    b'{"choices":[]}',
    b"{}",
]
_TEXT_EVENTS = [
    b'{"choices":[{"text":"a"}]}',
    b'{"choices":[{"text":""}]}',
    b'{"choices":[{"text":"b","finish_reason":"length"}]}',
    b'{"choices":[{"text":"c","logprobs":{"tokens":["c"],"token_logprobs":[-0.1]}}]}',
    b'{"choices":[{"text":"d"},{"text":"other"}]}',
    b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}',
]


def _one_by_one(kind: str, events: list[bytes]) -> tuple[list[object], object]:
    state = StreamState(kind)
    chunks = [state.take_chunk(event) for event in events]
    texts: list[str] = []
    out: list[object] = []
    for chunk in chunks:
        if chunk is None:
            continue
        if chunk.tool_calls or chunk.logprobs:
            if texts:
                out.append("".join(texts))
                texts = []
            out.append((chunk.text, chunk.tool_calls, chunk.logprobs))
        else:
            texts.append(chunk.text)
    if texts:
        out.append("".join(texts))
    return out, (state.deltas, state.finish_reason, state.usage)


@given(st.data())
def test_events_read_at_once_say_what_they_say_one_by_one(data: st.DataObject) -> None:
    """The batch reading (with its fast path for a plain text delta) hands on the same
    text runs, pieces, counts, finish and usage as reading each event alone."""
    kind = data.draw(st.sampled_from(["chat", "completion"]))
    pool = _CHAT_EVENTS if kind == "chat" else _TEXT_EVENTS
    events = data.draw(st.lists(st.sampled_from(pool), min_size=2, max_size=12))
    state = StreamState(kind)
    batch = state.take_chunks(events)
    got = [
        (c.text, c.tool_calls, c.logprobs) if c.tool_calls or c.logprobs else c.text for c in batch
    ]
    assert (got, (state.deltas, state.finish_reason, state.usage)) == _one_by_one(kind, events)
