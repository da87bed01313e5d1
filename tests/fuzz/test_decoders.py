"""Fuzzing smoke for every decoder that reads bytes a stranger sends (issue 16).

Each property feeds arbitrary input (random bytes, and structured inputs near
the valid ones, where bugs hide) to one decoder and allows only that layer's
typed error: the wire frame decoder and message parsing (`ProtocolError`), the
OpenAI request parser (`OpenAIError`, and a request it accepts must encode for
the worker: the 500s of issue 16 were exactly that), the TDX quote parser
(`EvidenceError`), receipts (`ReceiptError`) and vouchers (`VoucherError`).

A smoke in the suite: `COCOON_FUZZ_EXAMPLES` inputs per property (200 by
default). A long run: `COCOON_FUZZ_EXAMPLES=100000 pytest --timeout=0 tests/fuzz -q` (the
suite's 120 s per test would cut it).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from typing import Any

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cocoon.crypto.errors import ReceiptError
from cocoon.crypto.receipts import verify_receipt
from cocoon.inference import SealedPayload, payload_encoder
from cocoon.openai_api import OpenAIError, parse_chat, parse_completion, parse_embedding
from cocoon.payments.channels import signed_voucher
from cocoon.payments.errors import VoucherError
from cocoon.payments.vouchers import verify_voucher
from cocoon.tee.errors import EvidenceError
from cocoon.tee.tdx_quote import parse_tdx_quote
from cocoon.wire.errors import ProtocolError
from cocoon.wire.framing import FrameDecoder, decode_message, encode_frame
from cocoon.wire.messages import Hello, Ping, Request, VoucherMsg
from tee.vectors import sample_quote

EXAMPLES = int(os.environ.get("COCOON_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What msgpack carries: a strategy for its integers.
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)

# -- the wire ------------------------------------------------------------------

VALID_FRAMES = [
    encode_frame(Ping(7)),
    encode_frame(Hello(1, 0, "client", "net", b"n" * 32, b"cert")),
    encode_frame(Request("r1", "m", 1000, 16, 30_000, ["abcd"], b"sealed")),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid input with bytes flipped, cut or spliced in: near misses."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = draw(st.binary(max_size=16))
    return bytes(data)


@FUZZ
@given(st.one_of(st.binary(max_size=512), mutated(VALID_FRAMES)), st.integers(1, 64))
def test_the_frame_decoder_raises_only_protocol_errors(data: bytes, split: int) -> None:
    decoder = FrameDecoder(max_frame=4096)
    try:
        for start in range(0, len(data), split):
            decoder.feed(data[start : start + split])
    except ProtocolError:
        pass


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=512),
        mutated([frame[4:] for frame in VALID_FRAMES]),
        st.builds(
            msgspec.msgpack.encode,
            st.lists(st.one_of(st.text(max_size=8), INT64, st.binary(max_size=8))),
        ),
    )
)
def test_message_parsing_raises_only_protocol_errors(payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(payload)


# -- the OpenAI request parser ------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    "model": st.one_of(st.just("m"), JSON),
    "messages": st.one_of(
        st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": JSON}),
            max_size=3,
        ),
        JSON,
    ),
    "prompt": JSON,
    "input": JSON,
    "max_tokens": JSON,
    "seed": JSON,
    "stop": JSON,
    "temperature": JSON,
    "top_k": JSON,
    "logit_bias": JSON,
    "dimensions": JSON,
    "stream": JSON,
}


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Request bodies: near-valid objects with any field any JSON, or raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=256))
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=len(FIELDS)))
    body = {key: draw(FIELDS[key]) for key in keys}
    text = json.dumps(body)
    if draw(st.integers(0, 9)) == 0:
        depth = draw(st.integers(1, 3000))
        text = text[:-1] + (", " if body else "") + '"x": ' + "[" * depth + "]" * depth + "}"
    return text.encode()


@FUZZ
@given(bodies())
def test_the_openai_parser_raises_only_openai_errors_and_what_it_accepts_encodes(
    body: bytes,
) -> None:
    for parse in (parse_chat, parse_completion, parse_embedding):
        try:
            parsed: Any = parse(body)
        except OpenAIError as exc:
            assert 400 <= exc.status < 500
            continue
        # What the gateway accepts must travel to the worker (no 500 after parsing).
        payload_encoder.encode(
            SealedPayload(request_id="r", request=parsed.generation, response_key=b"k" * 32)
        )


# -- attestation, receipts, vouchers ------------------------------------------------


@FUZZ
@given(st.one_of(st.binary(max_size=2048), mutated([sample_quote()])))
def test_the_tdx_quote_parser_raises_only_evidence_errors(data: bytes) -> None:
    with contextlib.suppress(EvidenceError):
        parse_tdx_quote(data)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=512),
        st.builds(
            msgspec.msgpack.encode,
            st.lists(st.one_of(st.binary(max_size=64), INT64, st.text(max_size=8))),
        ),
    )
)
def test_receipt_decoding_raises_only_receipt_errors(data: bytes) -> None:
    with contextlib.suppress(ReceiptError):
        verify_receipt(data, "net")


@FUZZ
@given(
    st.text(max_size=80),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.binary(max_size=80),
    st.integers(min_value=-(2**40), max_value=2**40),
)
def test_voucher_decoding_raises_only_voucher_errors(
    channel: str, seqno: int, total: int, signature: bytes, network: int
) -> None:
    assume(0 <= seqno < 2**64 and 0 <= total < 2**64)  # what msgpack carries
    message = VoucherMsg(channel, seqno, total, signature)
    try:
        decoded = decode_message(encode_frame(message)[4:])
        assert isinstance(decoded, VoucherMsg)
        verify_voucher(
            signed_voucher(decoded, network), b"\x01" * 32, network=network, channel=channel
        )
    except (VoucherError, ProtocolError):
        pass


def test_frames_longer_than_the_limit_are_refused_from_the_header() -> None:
    decoder = FrameDecoder(max_frame=100)
    try:
        decoder.feed(struct.pack(">I", 101))
    except ProtocolError as exc:
        assert exc.code == "frame_too_large"
    else:
        raise AssertionError("a frame over the limit was accepted")
