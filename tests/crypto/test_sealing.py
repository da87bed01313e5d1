import msgspec
import pytest

from cocoon.crypto import (
    SUITE_HYBRID,
    SUITE_X25519,
    HpkeKeyPair,
    Recipient,
    SealError,
    envelope_recipients,
    open_request,
    seal_request,
)

NETWORK = "testnet"
REQUEST = "req-1"
SUITES = [SUITE_HYBRID, SUITE_X25519]


def _workers(suite: str, count: int) -> list[tuple[Recipient, HpkeKeyPair]]:
    keypairs = [HpkeKeyPair.generate(suite) for _ in range(count)]
    return [(Recipient(f"w{i}", suite, kp.public_bytes()), kp) for i, kp in enumerate(keypairs)]


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("count", [1, 3])
def test_every_recipient_can_open(suite: str, count: int) -> None:
    workers = _workers(suite, count)
    envelope = seal_request(b"prompt", [r for r, _ in workers], REQUEST, NETWORK)
    assert envelope_recipients(envelope) == [r.key_id for r, _ in workers]
    for recipient, keypair in workers:
        assert open_request(envelope, recipient.key_id, keypair, REQUEST, NETWORK) == b"prompt"


def test_mixed_suites_in_one_envelope() -> None:
    workers = _workers(SUITE_HYBRID, 1) + [
        (Recipient("x", SUITE_X25519, kp.public_bytes()), kp)
        for kp in [HpkeKeyPair.generate(SUITE_X25519)]
    ]
    envelope = seal_request(b"p", [r for r, _ in workers], REQUEST, NETWORK)
    for recipient, keypair in workers:
        assert open_request(envelope, recipient.key_id, keypair, REQUEST, NETWORK) == b"p"


@pytest.mark.parametrize("suite", SUITES)
def test_non_recipient_cannot_open(suite: str) -> None:
    workers = _workers(suite, 2)
    envelope = seal_request(b"p", [workers[0][0]], REQUEST, NETWORK)
    with pytest.raises(SealError):
        open_request(envelope, "w1", workers[1][1], REQUEST, NETWORK)
    # Claiming a listed key id does not help without its private key.
    with pytest.raises(SealError):
        open_request(envelope, "w0", workers[1][1], REQUEST, NETWORK)


@pytest.mark.parametrize(("request_id", "network"), [("req-2", NETWORK), (REQUEST, "mainnet")])
def test_wrong_request_or_network_fails(request_id: str, network: str) -> None:
    (recipient, keypair), *_ = _workers(SUITE_X25519, 1)
    envelope = seal_request(b"p", [recipient], REQUEST, NETWORK)
    with pytest.raises(SealError):
        open_request(envelope, recipient.key_id, keypair, request_id, network)


def test_relabelled_request_id_fails() -> None:
    (recipient, keypair), *_ = _workers(SUITE_X25519, 1)
    envelope = seal_request(b"p", [recipient], REQUEST, NETWORK)
    decoded = msgspec.msgpack.decode(envelope)
    decoded["request_id"] = "req-2"
    with pytest.raises(SealError):
        open_request(msgspec.msgpack.encode(decoded), "w0", keypair, "req-2", NETWORK)


@pytest.mark.parametrize("suite", SUITES)
def test_flipped_byte_anywhere_fails(suite: str) -> None:
    workers = _workers(suite, 3)
    envelope = seal_request(b"prompt", [r for r, _ in workers], REQUEST, NETWORK)
    recipient, keypair = workers[0]
    # Every byte, including the other candidates' wraps: the body authenticates them all.
    for position in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[position] ^= 0x01
        with pytest.raises(SealError):
            open_request(bytes(tampered), recipient.key_id, keypair, REQUEST, NETWORK)


def test_no_recipients_is_an_error() -> None:
    with pytest.raises(SealError):
        seal_request(b"p", [], REQUEST, NETWORK)


def test_bad_recipient_key_is_an_error() -> None:
    with pytest.raises(SealError):
        seal_request(b"p", [Recipient("w", SUITE_HYBRID, bytes(32))], REQUEST, NETWORK)


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\xc1", b"\x93\x01\x02\x03", bytes(100)])
def test_garbage_envelope_is_a_seal_error(garbage: bytes) -> None:
    keypair = HpkeKeyPair.generate(SUITE_X25519)
    with pytest.raises(SealError):
        envelope_recipients(garbage)
    with pytest.raises(SealError):
        open_request(garbage, "w0", keypair, REQUEST, NETWORK)
