import pytest

from cocoon.crypto import AnswerOpener, AnswerSealer, StreamError

KEY = bytes(range(32))
REQUEST = "req-1"


def _sealed(chunks: list[bytes]) -> tuple[AnswerSealer, list[bytes]]:
    sealer = AnswerSealer(KEY, REQUEST)
    out = [sealer.seal(c, final=i == len(chunks) - 1) for i, c in enumerate(chunks)]
    return sealer, out


def test_roundtrip_and_digests_agree() -> None:
    chunks = [b"Hel", b"lo", b"", b" world"]
    sealer, sealed = _sealed(chunks)
    opener = AnswerOpener(KEY, REQUEST)
    assert opener.digest() == AnswerOpener(KEY, "other").digest()  # empty stream
    opened = [opener.open(i, s, final=i == len(sealed) - 1) for i, s in enumerate(sealed)]
    assert opened == chunks
    assert opener.finished and sealer.finished
    opener.finish()
    assert opener.digest() == sealer.digest()
    assert sealer.index == opener.index == len(chunks)


def test_partial_digests_agree_chunk_by_chunk() -> None:
    sealer = AnswerSealer(KEY, REQUEST)
    opener = AnswerOpener(KEY, REQUEST)
    assert sealer.digest() == opener.digest()
    for i in range(5):
        opener.open(i, sealer.seal(b"x" * i, final=i == 4), final=i == 4)
        assert sealer.digest() == opener.digest()


def test_reordering_is_detected() -> None:
    _, sealed = _sealed([b"a", b"b", b"c"])
    opener = AnswerOpener(KEY, REQUEST)
    with pytest.raises(StreamError):
        opener.open(0, sealed[1], final=False)  # right index, wrong chunk
    with pytest.raises(StreamError):
        opener.open(1, sealed[1], final=False)  # skipped chunk 0


def test_duplicate_is_detected() -> None:
    _, sealed = _sealed([b"a", b"b"])
    opener = AnswerOpener(KEY, REQUEST)
    opener.open(0, sealed[0], final=False)
    with pytest.raises(StreamError):
        opener.open(0, sealed[0], final=False)
    with pytest.raises(StreamError):
        opener.open(1, sealed[0], final=False)


def test_truncation_is_detected() -> None:
    _, sealed = _sealed([b"a", b"b", b"c"])
    opener = AnswerOpener(KEY, REQUEST)
    opener.open(0, sealed[0], final=False)
    opener.open(1, sealed[1], final=False)
    with pytest.raises(StreamError, match="truncated"):
        opener.finish()


def test_non_final_chunk_cannot_pose_as_final() -> None:
    _, sealed = _sealed([b"a", b"b"])
    opener = AnswerOpener(KEY, REQUEST)
    with pytest.raises(StreamError):
        opener.open(0, sealed[0], final=True)
    opener.open(0, sealed[0], final=False)
    with pytest.raises(StreamError):
        opener.open(1, sealed[1], final=False)  # final chunk posing as non-final


def test_tampered_chunk_is_detected() -> None:
    _, sealed = _sealed([b"hello"])
    for position in range(len(sealed[0])):
        tampered = bytearray(sealed[0])
        tampered[position] ^= 0x80
        with pytest.raises(StreamError):
            AnswerOpener(KEY, REQUEST).open(0, bytes(tampered), final=True)


@pytest.mark.parametrize(("key", "request_id"), [(bytes(32), REQUEST), (KEY, "req-2")])
def test_other_key_or_request_fails(key: bytes, request_id: str) -> None:
    _, sealed = _sealed([b"hello"])
    with pytest.raises(StreamError):
        AnswerOpener(key, request_id).open(0, sealed[0], final=True)


def test_nothing_after_final() -> None:
    sealer, sealed = _sealed([b"a"])
    with pytest.raises(StreamError):
        sealer.seal(b"more", final=False)
    opener = AnswerOpener(KEY, REQUEST)
    opener.open(0, sealed[0], final=True)
    with pytest.raises(StreamError):
        opener.open(1, sealed[0], final=True)


def test_failed_open_does_not_advance() -> None:
    _, sealed = _sealed([b"a", b"b"])
    opener = AnswerOpener(KEY, REQUEST)
    before = opener.digest()
    with pytest.raises(StreamError):
        opener.open(0, b"junk" * 8, final=False)
    assert opener.index == 0 and opener.digest() == before
    assert opener.open(0, sealed[0], final=False) == b"a"


def test_response_key_must_be_32_bytes() -> None:
    with pytest.raises(StreamError):
        AnswerSealer(bytes(16), REQUEST)
