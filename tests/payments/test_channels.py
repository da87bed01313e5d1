"""The payer's channel proof, vouchers on the wire, and the worker's share of a price."""

from __future__ import annotations

from fractions import Fraction

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.crypto.receipts import Receipt
from cocoon.payments.channels import (
    check_pay_channel,
    pay_channel_message,
    signed_voucher,
    voucher_message,
)
from cocoon.payments.errors import VoucherError
from cocoon.payments.sides import BP, receipt_price, worker_share
from cocoon.payments.vouchers import MAX_SEQNO, MAX_TOTAL, SignedVoucher, Voucher, sign_voucher
from cocoon.pricing import Prices
from cocoon.wire.framing import decode_message, encode_frame
from cocoon.wire.messages import PayChannel, VoucherMsg

NETWORK = "cocoon-test"
NETWORK_ID = 42
CHANNEL = "0:" + "3c" * 32
OTHER_CHANNEL = "0:" + "c3" * 32
PAYER_NODE = "aaaaaaaaaaaaaaaa"
PAYEE_NODE = "bbbbbbbbbbbbbbbb"
PAYER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
STRANGER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x06" * 32)
STRANGER_PUB = STRANGER_KEY.public_key().public_bytes_raw()


def wire(message: PayChannel | VoucherMsg) -> PayChannel | VoucherMsg:
    """Through a frame and back, as the peer would read it."""
    decoded = decode_message(encode_frame(message)[4:])
    assert isinstance(decoded, PayChannel | VoucherMsg)
    return decoded


def proof(latest: SignedVoucher | None = None) -> PayChannel:
    return pay_channel_message(
        PAYER_KEY, NETWORK, CHANNEL, payer_node=PAYER_NODE, payee_node=PAYEE_NODE, latest=latest
    )


# -- the channel proof -----------------------------------------------------------------------


def test_proof_verifies_for_its_connection() -> None:
    message = wire(proof())
    assert isinstance(message, PayChannel)
    assert message.channel == CHANNEL
    assert message.payer_key == PAYER_KEY.public_key().public_bytes_raw()
    assert message.latest is None
    check_pay_channel(message, NETWORK, payer_node=PAYER_NODE, payee_node=PAYEE_NODE)


@pytest.mark.parametrize(
    ("network", "payer_node", "payee_node"),
    [
        (NETWORK, "cccccccccccccccc", PAYEE_NODE),  # replayed by another payer node
        (NETWORK, PAYER_NODE, "cccccccccccccccc"),  # replayed towards another payee
        (NETWORK, PAYEE_NODE, PAYER_NODE),  # roles swapped
        ("cocoon-main", PAYER_NODE, PAYEE_NODE),  # another network
    ],
    ids=["other payer node", "other payee node", "swapped nodes", "other network"],
)
def test_proof_fails_on_another_connection(network: str, payer_node: str, payee_node: str) -> None:
    with pytest.raises(VoucherError, match="channel proof"):
        check_pay_channel(proof(), network, payer_node=payer_node, payee_node=payee_node)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: msgspec.structs.replace(m, channel=OTHER_CHANNEL),
        lambda m: msgspec.structs.replace(m, payer_key=STRANGER_PUB),
        lambda m: msgspec.structs.replace(m, proof=bytes(64)),
        lambda m: msgspec.structs.replace(m, proof=m.proof[:-1]),
        lambda m: msgspec.structs.replace(m, payer_key=b"\x01" * 31),
    ],
    ids=["other channel", "other payer key", "zero proof", "short proof", "short key"],
)
def test_proof_fails_for_another_channel_or_key(tamper: object) -> None:
    assert callable(tamper)
    with pytest.raises(VoucherError, match="channel proof"):
        check_pay_channel(tamper(proof()), NETWORK, payer_node=PAYER_NODE, payee_node=PAYEE_NODE)


def test_proof_by_a_stranger_claiming_the_payer_key_fails() -> None:
    forged = pay_channel_message(
        STRANGER_KEY, NETWORK, CHANNEL, payer_node=PAYER_NODE, payee_node=PAYEE_NODE, latest=None
    )
    claimed = msgspec.structs.replace(forged, payer_key=PAYER_KEY.public_key().public_bytes_raw())
    with pytest.raises(VoucherError, match="channel proof"):
        check_pay_channel(claimed, NETWORK, payer_node=PAYER_NODE, payee_node=PAYEE_NODE)


def test_proof_carries_the_latest_voucher() -> None:
    latest = sign_voucher(PAYER_KEY, Voucher(CHANNEL, 9, 12_345), NETWORK_ID)
    message = wire(proof(latest))
    assert isinstance(message, PayChannel) and message.latest is not None
    check_pay_channel(message, NETWORK, payer_node=PAYER_NODE, payee_node=PAYEE_NODE)
    assert message.latest == voucher_message(latest)
    assert signed_voucher(message.latest, NETWORK_ID) == latest


# -- vouchers on the wire --------------------------------------------------------------------


@settings(max_examples=100)
@given(
    seqno=st.integers(0, MAX_SEQNO),
    # The Coins field goes to 2**120 - 1; the software carries totals below 2**63
    # (SQLite and msgpack integers).
    total=st.integers(0, MAX_TOTAL),
    request_id=st.text(max_size=40),
    account=st.binary(min_size=32, max_size=32),
)
def test_voucher_message_round_trip(
    seqno: int, total: int, request_id: str, account: bytes
) -> None:
    channel = "0:" + account.hex()
    signed = sign_voucher(PAYER_KEY, Voucher(channel, seqno, total), NETWORK_ID)
    message = wire(voucher_message(signed, request_id))
    assert isinstance(message, VoucherMsg)
    assert (message.channel, message.seqno, message.total_nano) == (channel, seqno, total)
    assert (message.signature, message.request_id) == (signed.signature, request_id)
    assert signed_voucher(message, NETWORK_ID) == signed
    assert voucher_message(signed).request_id == ""


@pytest.mark.parametrize(
    "message",
    [
        VoucherMsg(CHANNEL, MAX_SEQNO + 1, 1, bytes(64)),
        VoucherMsg(CHANNEL, -1, 1, bytes(64)),
        VoucherMsg(CHANNEL, 1, -1, bytes(64)),
        VoucherMsg(CHANNEL, 1, 2**120, bytes(64)),
        VoucherMsg("not an address", 1, 1, bytes(64)),
        VoucherMsg("", 1, 1, bytes(64)),
    ],
    ids=[
        "seqno above uint32",
        "negative seqno",
        "negative total",
        "total above coins",
        "garbage address",
        "empty address",
    ],
)
def test_signed_voucher_refuses_out_of_range_fields(message: VoucherMsg) -> None:
    with pytest.raises(VoucherError):
        signed_voucher(message, NETWORK_ID)


@pytest.mark.parametrize(
    "channel",
    ["0:" + "3c" * 31, "0:" + "3c" * 33, "0:3c", "300:" + "3c" * 32],
    ids=["31-byte account", "33-byte account", "1-byte account", "workchain 300"],
)
def test_signed_voucher_refuses_malformed_channel_address(channel: str) -> None:
    with pytest.raises(VoucherError):
        signed_voucher(VoucherMsg(channel, 1, 1, bytes(64)), NETWORK_ID)


# -- prices ----------------------------------------------------------------------------------


@given(amount=st.integers(0, 2**120), commission_bp=st.integers(0, BP))
def test_worker_share_is_exact_integer_arithmetic(amount: int, commission_bp: int) -> None:
    share = worker_share(amount, commission_bp)
    commission = amount - share
    assert isinstance(share, int)
    assert share == amount - amount * commission_bp // 10_000
    assert commission == int(Fraction(amount * commission_bp, 10_000))  # rounded down
    assert 0 <= share <= amount and commission >= 0
    assert share + commission == amount
    assert worker_share(amount + 1, commission_bp) >= share  # more work never pays less


def test_worker_share_edges() -> None:
    assert worker_share(12_345, 0) == 12_345
    assert worker_share(12_345, BP) == 0
    assert worker_share(0, 500) == 0
    assert worker_share(19, 500) == 19  # commission 0.95 rounds down to 0
    assert worker_share(20, 500) == 19
    # Far beyond float precision: a float computation would be off by thousands.
    big = 10**30 + 7
    assert worker_share(big, 1_234) == big - big * 1_234 // BP
    assert worker_share(big, 1_234) != int(big * (1 - 1_234 / BP))


def test_receipt_price_bills_the_receipt_at_its_coefficient() -> None:
    receipt = Receipt(
        network=NETWORK,
        request_id="r1",
        model="m",
        worker_key=bytes(32),
        prompt_tokens=1_000,
        cached_prompt_tokens=200,
        completion_tokens=50,
        reasoning_tokens=10,
        request_hash=bytes(32),
        answer_hash=bytes(32),
        answer_chunks=1,
        final=True,
        started_ms=0,
        finished_ms=1,
        seq=0,
        coefficient_milli=1_500,
    )
    # (800·1000 + 200·100 + 50·4000 + 10·4000) milli-tokens · 1000 nano · 1.5
    assert receipt_price(Prices(), receipt) == 1_590_000
    doubled = msgspec.structs.replace(receipt, coefficient_milli=3_000)
    assert receipt_price(Prices(), doubled) == 2 * 1_590_000
