import contextlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.crypto import (
    SUITE_X25519,
    AnswerOpener,
    AnswerSealer,
    HpkeKeyPair,
    Receipt,
    ReceiptError,
    Recipient,
    SealError,
    envelope_recipients,
    open_request,
    seal_request,
    sign_receipt,
    signing_payload,
    verify_receipt,
)
from cocoon.crypto.framing import length_prefixed

KEYPAIR = HpkeKeyPair.generate(SUITE_X25519)
RECIPIENT = Recipient("w0", SUITE_X25519, KEYPAIR.public_bytes())
ENVELOPE = seal_request(b"prompt", [RECIPIENT], "r", "n")
WORKER = Ed25519PrivateKey.generate()
RECEIPT = Receipt(
    network="n",
    request_id="r",
    model="m",
    worker_key=WORKER.public_key().public_bytes_raw(),
    prompt_tokens=1,
    completion_tokens=2,
    request_hash=bytes(32),
    answer_hash=bytes(32),
    answer_chunks=1,
    final=True,
    started_ms=0,
    finished_ms=1,
    seq=0,
)
SIGNED_RECEIPT = sign_receipt(WORKER, RECEIPT)

# Near-valid inputs reach deeper than random bytes: splice random bytes into a real message.
_edit = st.tuples(
    st.integers(min_value=0), st.integers(min_value=0, max_value=8), st.binary(max_size=8)
)


def _splice(data: bytes, edit: tuple[int, int, bytes]) -> bytes:
    position, removed, inserted = edit
    position %= len(data) + 1
    return data[:position] + inserted + data[position + removed :]


@given(
    key=st.binary(min_size=32, max_size=32),
    request_id=st.text(max_size=20),
    chunks=st.lists(st.binary(max_size=64), min_size=1, max_size=20),
)
def test_any_chunk_list_roundtrips(key: bytes, request_id: str, chunks: list[bytes]) -> None:
    sealer, opener = AnswerSealer(key, request_id), AnswerOpener(key, request_id)
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        assert opener.open(i, sealer.seal(chunk, final=i == last), final=i == last) == chunk
    opener.finish()
    assert opener.digest() == sealer.digest()


@settings(max_examples=50)
@given(plaintext=st.binary(max_size=256), request_id=st.text(max_size=20))
def test_any_request_roundtrips(plaintext: bytes, request_id: str) -> None:
    envelope = seal_request(plaintext, [RECIPIENT], request_id, "n")
    assert open_request(envelope, "w0", KEYPAIR, request_id, "n") == plaintext


@given(garbage=st.binary(max_size=200))
def test_garbage_envelope_raises_only_seal_error(garbage: bytes) -> None:
    for call in (
        lambda: open_request(garbage, "w0", KEYPAIR, "r", "n"),
        lambda: envelope_recipients(garbage),
    ):
        with contextlib.suppress(SealError):
            call()


@given(edit=_edit)
def test_spliced_envelope_opens_unchanged_or_raises_seal_error(
    edit: tuple[int, int, bytes],
) -> None:
    with contextlib.suppress(SealError):
        assert open_request(_splice(ENVELOPE, edit), "w0", KEYPAIR, "r", "n") == b"prompt"


@given(edit=_edit)
def test_spliced_receipt_verifies_unchanged_or_raises_receipt_error(
    edit: tuple[int, int, bytes],
) -> None:
    with contextlib.suppress(ReceiptError):
        assert verify_receipt(_splice(SIGNED_RECEIPT, edit), "n") == RECEIPT


@given(garbage=st.binary(max_size=200), worker_key=st.none() | st.binary(max_size=40))
def test_garbage_receipt_raises_only_receipt_error(
    garbage: bytes, worker_key: bytes | None
) -> None:
    with contextlib.suppress(ReceiptError):
        verify_receipt(garbage, "n", worker_key)


@given(
    a=st.tuples(st.binary(), st.text(), st.binary()),
    b=st.tuples(st.binary(), st.text(), st.binary()),
)
def test_signing_payload_is_injective(
    a: tuple[bytes, str, bytes], b: tuple[bytes, str, bytes]
) -> None:
    assert (signing_payload(*a) == signing_payload(*b)) == (a == b)


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_length_prefixed_is_each_field_after_its_4_byte_length(fields: list[bytes]) -> None:
    encoded = length_prefixed(*fields)
    decoded, rest = [], encoded
    while rest:
        size = int.from_bytes(rest[:4], "big")
        decoded.append(rest[4 : 4 + size])
        rest = rest[4 + size :]
    assert decoded == fields
    assert len(encoded) == sum(4 + len(field) for field in fields)
