"""Coverage-guided fuzzing with atheris (libFuzzer) of the decoders a stranger reaches.

    python tests/fuzz/atheris_run.py TARGET [libFuzzer flags]
    python tests/fuzz/atheris_run.py frames -runs=1000000 -seed=1

TARGET is one of `TARGETS` below. Each target feeds libFuzzer's input to one
decoder and lets through only that layer's typed error; anything else is a
crash: libFuzzer prints the traceback, writes the input as `crash-<sha1>`
(under `-artifact_prefix=`) and the run exits non-zero. The corpus starts from
real, valid encodings (a temporary folder, unless a folder is given after the
flags), so mutations begin near the inputs the code accepts.

The Hypothesis properties beside this file are the quick smoke in the suite;
`test_atheris_targets.py` runs every target here for a few thousand inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tee.vectors

with atheris.instrument_imports(include=["cocoon"]):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cocoon.agent_api.response_store import ResponseStore
    from cocoon.agent_api.responses import output_history, response_object
    from cocoon.client.responses_route import chat_request, read_request
    from cocoon.crypto.errors import ReceiptError
    from cocoon.crypto.receipts import Receipt, sign_receipt, verify_receipt
    from cocoon.inference import SealedPayload, payload_encoder
    from cocoon.openai_api import OpenAIError, parse_chat, parse_completion, parse_embedding
    from cocoon.payments.channels import signed_voucher, voucher_message
    from cocoon.payments.errors import VoucherError
    from cocoon.payments.vouchers import Voucher, sign_voucher, verify_voucher
    from cocoon.tee.errors import EvidenceError
    from cocoon.tee.tdx_quote import parse_tdx_quote
    from cocoon.wire.errors import ProtocolError
    from cocoon.wire.framing import FrameDecoder, decode_message, encode_frame
    from cocoon.wire.messages import Hello, Message, Ping, Request, VoucherMsg
from tee.vectors import sample_quote

NETWORK = "fuzz-net"
NETWORK_ID = -239
CHANNEL = "0:" + "ab" * 32
PAYER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz payer").digest())
PAYER_KEY = PAYER.public_key().public_bytes_raw()
WORKER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz worker").digest())

# -- the wire -------------------------------------------------------------------


def _sample(info: msgspec.inspect.Type) -> Any:
    """A small valid value of a msgspec type: seeds one of every message."""
    if isinstance(info, msgspec.inspect.UnionType):
        return _sample(next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)))
    if isinstance(info, msgspec.inspect.StructType):
        return info.cls(**{field.name: _sample(field.type) for field in info.fields})
    if isinstance(info, msgspec.inspect.ListType):
        return [_sample(info.item_type)]
    if isinstance(info, msgspec.inspect.DictType):
        return {_sample(info.key_type): _sample(info.value_type)}
    simple = {
        msgspec.inspect.StrType: "s",
        msgspec.inspect.IntType: 7,
        msgspec.inspect.FloatType: 0.5,
        msgspec.inspect.BoolType: True,
        msgspec.inspect.BytesType: b"b" * 32,
    }
    return simple[type(info)]


_MESSAGES = msgspec.inspect.type_info(Message)
assert isinstance(_MESSAGES, msgspec.inspect.UnionType)
FRAMES = [
    encode_frame(Ping(7)),
    encode_frame(Hello(1, 3, "client", NETWORK, b"n" * 32, b"cert")),
    encode_frame(Request("r1", "m", 1000, 16, 30_000, ["abcd"], b"sealed")),
    *(encode_frame(_sample(info)) for info in _MESSAGES.types),
]


def frames(data: bytes) -> None:
    """The first byte picks how the stream is cut into reads, as a socket would."""
    if not data:
        return
    split, stream = data[0] % 64 + 1, data[1:]
    decoder = FrameDecoder(max_frame=4096)
    with contextlib.suppress(ProtocolError):
        for start in range(0, len(stream), split):
            for _message in decoder.feed(stream[start : start + split]):
                pass


def messages(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data)


# -- the OpenAI request parser ------------------------------------------------------

BODIES = [
    json.dumps(body).encode()
    for body in (
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["\n"],
            "seed": 1,
            "logit_bias": {"1": 2},
        },
        {"model": "m", "prompt": "once upon", "max_tokens": 4, "n": 1, "echo": False},
        {"model": "m", "input": ["a", "b"], "dimensions": 8, "encoding_format": "float"},
    )
]


def openai(data: bytes) -> None:
    """Every parser: only an OpenAIError with a 4xx status, and what is accepted
    must encode for the worker (the 500s of issue 16 came after parsing)."""
    for parse in (parse_chat, parse_completion, parse_embedding):
        try:
            parsed: Any = parse(data)
        except OpenAIError as exc:
            if not 400 <= exc.status < 500:
                raise AssertionError(f"status {exc.status} for client input") from exc
            continue
        payload_encoder.encode(
            SealedPayload(request_id="r", request=parsed.generation, response_key=b"k" * 32)
        )


# A store holding one response, so that bodies naming it continue a conversation.
STORE = ResponseStore(budget_bytes=1 << 20)
STORE.put(
    response_object("stored", "m", 0, {}, [], "stop", None),
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
)
RESPONSES_BODIES = [
    json.dumps(body).encode()
    for body in (
        {"model": "m", "input": "hi", "max_output_tokens": 4},
        {"model": "m", "input": "and then?", "previous_response_id": "resp_stored"},
        {
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "name": "get", "arguments": "{}", "call_id": "c1"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
            "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get"},
            "stream": True,
            "metadata": {"k": "v"},
        },
        {
            "model": "m",
            "input": "json",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "x",
                    "schema": {
                        "type": "object",
                        "properties": {"a": {"type": "string", "maxLength": 10}},
                    },
                }
            },
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 2,
            "store": False,
        },
    )
]


def responses(data: bytes) -> None:
    """POST /v1/responses as the gateway reads it: only a 4xx OpenAIError, and what is
    accepted must encode for the worker and be storable."""
    try:
        asked = read_request(data, STORE)
        parsed = chat_request(asked)
    except OpenAIError as exc:
        if not 400 <= exc.status < 500:
            raise AssertionError(f"status {exc.status} for client input") from exc
        return
    payload_encoder.encode(
        SealedPayload(request_id="r", request=parsed.generation, response_key=b"k" * 32)
    )
    output: list[dict[str, Any]] = []
    STORE.put(response_object("r", "m", 0, asked.echo, output, "stop", None),
              asked.history + output_history(output))  # fmt: skip
    assert STORE.bytes <= STORE.budget_bytes


# -- attestation, receipts, vouchers ------------------------------------------------


def tdx_quote(data: bytes) -> None:
    with contextlib.suppress(EvidenceError):
        parse_tdx_quote(data)


RECEIPTS = [
    sign_receipt(
        WORKER,
        Receipt(
            network=NETWORK,
            request_id="r1",
            model="m",
            worker_key=WORKER.public_key().public_bytes_raw(),
            prompt_tokens=12,
            completion_tokens=34,
            request_hash=bytes(32),
            answer_hash=bytes(range(32)),
            answer_chunks=5,
            final=final,
            started_ms=1_700_000_000_000,
            finished_ms=1_700_000_000_050,
            seq=(1 << 48) | 7,
        ),
    )
    for final in (False, True)
]


def receipts(data: bytes) -> None:
    with contextlib.suppress(ReceiptError):
        verify_receipt(data, NETWORK)


VOUCHERS = [
    encode_frame(voucher_message(sign_voucher(PAYER, Voucher(CHANNEL, seqno, total), NETWORK_ID)))[
        4:
    ]
    for seqno, total in ((1, 10**9), (2**32 - 1, 2**62))
]


def vouchers(data: bytes) -> None:
    """A voucher frame as a payee receives it: decoded, then checked against the
    channel and payer key the payee knows."""
    try:
        message = decode_message(data)
        if isinstance(message, VoucherMsg):
            verify_voucher(
                signed_voucher(message, NETWORK_ID), PAYER_KEY, network=NETWORK_ID, channel=CHANNEL
            )
    except (ProtocolError, VoucherError):
        pass


TARGETS: dict[str, tuple[Callable[[bytes], None], list[bytes]]] = {
    "frames": (frames, [b"\x07" + frame for frame in FRAMES] + [b"\x00" + b"".join(FRAMES)]),
    "messages": (messages, [frame[4:] for frame in FRAMES]),
    "openai": (openai, BODIES),
    "responses": (responses, RESPONSES_BODIES),
    "tdx_quote": (tdx_quote, [sample_quote()]),
    "receipts": (receipts, RECEIPTS),
    "vouchers": (vouchers, VOUCHERS),
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus dir]")
    target, seeds = TARGETS[argv[1]]
    flags = argv[2:]
    # libFuzzer exits the process when done, so nothing after Fuzz() runs: a
    # corpus directory made here is kept (and named) rather than cleaned up.
    corpora = [flag for flag in flags if not flag.startswith("-")]
    if not corpora:
        corpus = tempfile.mkdtemp(prefix=f"cocoon-fuzz-{argv[1]}-")
        print(f"corpus: {corpus}", file=sys.stderr)
        flags.append(corpus)
        corpora.append(corpus)
    first = Path(corpora[0])
    first.mkdir(parents=True, exist_ok=True)
    if not any(first.iterdir()):
        for index, seed in enumerate(seeds):
            (first / f"seed-{index}").write_bytes(seed)
    # Inputs as long as a frame from the start: coverage grows little inside
    # msgspec's C decoder, so libFuzzer's slow length ramp would keep most
    # inputs a few bytes long.
    # And every seed kept (one of each message), though they cover the same
    # Python lines.
    for default in ("-len_control=0", "-keep_seed=1"):
        if not any(flag.startswith(default.split("=")[0] + "=") for flag in flags):
            flags.insert(0, default)
    atheris.Setup([argv[0], *flags], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
