"""`voucher_hash` against pytoniq-core's cell hash, and signatures as the contract checks them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pytoniq_core import Address

from cocoon.chain.channel import verify_voucher_cell, voucher_cell
from cocoon.payments.voucher_hash import voucher_hash
from cocoon.payments.vouchers import MAX_COINS, MAX_SEQNO, MAX_TOTAL, Voucher, sign_voucher

networks = st.integers(-(2**31), 2**31 - 1)
workchains = st.sampled_from([0, -1])
accounts = st.binary(min_size=32, max_size=32)
seqnos = st.integers(0, MAX_SEQNO)
# Bias towards the edges of each byte length of the Coins field.
totals = st.one_of(
    st.integers(0, MAX_COINS),
    st.integers(0, 120).map(lambda n: max(0, 2**n - 1)),
    st.integers(0, 119).map(lambda n: 2**n),
)

# What a Voucher carries (the software keeps totals below 2**63).
voucher_totals = totals.filter(lambda t: t <= MAX_TOTAL)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@settings(max_examples=300)
@given(networks, workchains, accounts, seqnos, totals)
def test_equals_pytoniq_cell_hash(
    network: int, workchain: int, account: bytes, seqno: int, total: int
) -> None:
    cell = voucher_cell(network, Address((workchain, account)), seqno, total)
    assert voucher_hash(network, workchain, account, seqno, total) == bytes(cell.hash)


@pytest.mark.parametrize("total", [MAX_COINS + 1, 2**128, 2**200])
def test_total_above_coins_range_raises(total: int) -> None:
    with pytest.raises(ValueError, match="coins range"):
        voucher_hash(0, 0, bytes(32), 1, total)


def test_negative_total_raises() -> None:
    # Not a ValueError today (int.to_bytes refuses the negative value), but it must not
    # produce a hash.
    with pytest.raises((ValueError, OverflowError)):
        voucher_hash(0, 0, bytes(32), 1, -1)


@pytest.mark.parametrize("account", [bytes(31), bytes(33), b""])
def test_account_must_be_32_bytes(account: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        voucher_hash(0, 0, account, 1, 1)


@pytest.mark.parametrize(
    ("network", "seqno"), [(1, MAX_SEQNO + 1), (2**31, 1), (2**32 + 1, 1), (-(2**31) - 1, 1)]
)
def test_fields_out_of_cell_range_raise(network: int, seqno: int) -> None:
    account = bytes(31) + b"\x01"
    with pytest.raises((ValueError, OverflowError)):
        voucher_hash(network, 0, account, seqno, 5)


@settings(max_examples=50)
@given(networks, workchains, accounts, seqnos, voucher_totals)
def test_signature_verifies_on_the_pytoniq_cell(
    network: int, workchain: int, account: bytes, seqno: int, total: int
) -> None:
    channel = Address((workchain, account)).to_str(is_user_friendly=False)
    signed = sign_voucher(KEY, Voucher(channel, seqno, total), network)
    public = KEY.public_key().public_bytes_raw()
    cell = voucher_cell(network, channel, seqno, total)
    assert verify_voucher_cell(cell, signed.signature, public)
    assert signed.cell().hash == cell.hash
    # The contract refuses the same signature on any other voucher.
    other_total = total + 1 if total < MAX_COINS else total - 1
    assert not verify_voucher_cell(
        voucher_cell(network, channel, seqno, other_total), signed.signature, public
    )
    other_network = network + 1 if network < 2**31 - 1 else network - 1
    assert not verify_voucher_cell(
        voucher_cell(other_network, channel, seqno, total), signed.signature, public
    )
    other = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key().public_bytes_raw()
    assert not verify_voucher_cell(cell, signed.signature, other)
