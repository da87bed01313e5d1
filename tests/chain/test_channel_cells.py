"""Channel cells, vouchers and the v4r2 wallet in Python (no chain needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Address, Cell

from cocoon.chain import channel as ch
from cocoon.chain import wallet as w
from cocoon.payments.errors import (
    BadVoucherSignature,
    VoucherError,
    VoucherNotNewer,
    VoucherOverDeposit,
    WrongVoucherChannel,
    WrongVoucherNetwork,
)
from cocoon.payments.vouchers import (
    SignedVoucher,
    Voucher,
    check_newer,
    sign_voucher,
    verify_voucher,
)

PAYER = "0:" + "07" * 32
PAYEE = "0:" + "08" * 32
CHANNEL = "0:" + "09" * 32


def _cfg(key: bytes = bytes(range(32))) -> ch.ChannelConfig:
    return ch.ChannelConfig(1, 5, PAYER, PAYEE, key, 3600)


def test_channel_data_layout_and_address() -> None:
    data = ch.channel_data(_cfg())
    s = data.begin_parse()
    assert [s.load_coins(), s.load_coins(), s.load_uint(32), s.load_uint(32)] == [0, 0, 0, 0]
    p = s.load_ref().begin_parse()
    assert p.load_int(32) == 1 and p.load_uint(64) == 5
    assert p.load_address() == Address(PAYER) and p.load_address() == Address(PAYEE)
    assert p.load_bytes(32) == bytes(range(32)) and p.load_uint(32) == 3600
    code, data2, addr = ch.channel_init(_cfg())
    assert data2.hash == data.hash
    assert addr.wc == 0 and addr.hash_part == ch.state_init_cell(code, data).hash
    assert ch.channel_init(_cfg(bytes(32)))[2] != addr  # another key, another channel


def test_bodies() -> None:
    s = ch.top_up_body(123, query_id=7).begin_parse()
    assert (s.load_uint(32), s.load_uint(64), s.load_coins()) == (ch.ChannelOp.TOP_UP, 7, 123)
    assert ch.close_body().begin_parse().load_uint(32) == ch.ChannelOp.CLOSE
    assert ch.withdraw_body().begin_parse().load_uint(32) == ch.ChannelOp.WITHDRAW
    v = ch.voucher_cell(-3, CHANNEL, 9, 10**9)
    s = ch.redeem_body(v, b"\x01" * 64).begin_parse()
    assert s.load_uint(32) == ch.ChannelOp.REDEEM and s.load_uint(64) == 0
    assert s.load_bytes(64) == b"\x01" * 64 and s.load_ref().hash == v.hash
    vs = v.begin_parse()
    assert (vs.load_uint(32), vs.load_int(32)) == (ch.VOUCHER_TAG, -3)
    assert vs.load_address() == Address(CHANNEL)
    assert (vs.load_uint(32), vs.load_coins()) == (9, 10**9)
    with pytest.raises(ValueError):
        ch.redeem_body(v, b"short")


def test_sign_and_verify_voucher() -> None:
    key = Ed25519PrivateKey.generate()
    pub = w.public_key_bytes(key)
    v = Voucher(CHANNEL, 1, 5 * 10**8)
    sv = sign_voucher(key, v, 1)
    verify_voucher(sv, pub, network=1, channel=CHANNEL)
    # The user-friendly form of the same channel is the same channel.
    verify_voucher(sv, pub, network=1, channel=Address(CHANNEL).to_str())
    with pytest.raises(BadVoucherSignature):
        verify_voucher(
            SignedVoucher(Voucher(CHANNEL, 1, 6 * 10**8), 1, sv.signature), pub, network=1
        )
    with pytest.raises(BadVoucherSignature):
        verify_voucher(sv, w.public_key_bytes(Ed25519PrivateKey.generate()), network=1)
    with pytest.raises(WrongVoucherNetwork):
        verify_voucher(sv, pub, network=2)
    with pytest.raises(WrongVoucherChannel):
        verify_voucher(sv, pub, network=1, channel=PAYER)
    check_newer(v, seqno=0, redeemed=0, deposit=10**9)
    with pytest.raises(VoucherNotNewer):
        check_newer(v, seqno=1, redeemed=0, deposit=None)
    with pytest.raises(VoucherNotNewer):
        check_newer(v, seqno=0, redeemed=5 * 10**8, deposit=None)
    with pytest.raises(VoucherOverDeposit):
        check_newer(v, seqno=0, redeemed=0, deposit=10**8)
    with pytest.raises(VoucherError):
        Voucher(CHANNEL, -1, 0)
    with pytest.raises(VoucherError):
        Voucher("nope", 1, 0)


def test_wallet_code_keys_and_transfer(tmp_path: Path) -> None:
    assert w.WALLET_V4R2_CODE.hash.hex() == w.WALLET_V4R2_CODE_HASH
    words = w.new_mnemonic()
    key = w.key_from_mnemonic(words)
    w.save_key_file(tmp_path / "k", words)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert w.public_key_bytes(w.load_key_file(tmp_path / "k")) == w.public_key_bytes(key)
    seed = bytes(range(32))
    (tmp_path / "h").write_text(seed.hex())
    assert w.public_key_bytes(w.load_key_file(tmp_path / "h")) == w.public_key_bytes(
        Ed25519PrivateKey.from_private_bytes(seed)
    )
    with pytest.raises(w.WalletError):
        w.key_from_mnemonic(["abandon"] * 24)
    (tmp_path / "bad").write_text("xyz")
    with pytest.raises(w.WalletError):
        w.load_key_file(tmp_path / "bad")

    wallet = w.WalletV4(None, key)  # type: ignore[arg-type]
    ext = wallet.transfer(
        [w.InternalMessage(PAYEE, 10**9, body=ch.close_body())],
        seqno=0,
        valid_until=1000,
        deploy=True,
    )
    msg = Cell.one_from_boc(ext.to_boc()).begin_parse()
    assert msg.load_uint(2) == 0b10 and msg.load_uint(2) == 0
    assert msg.load_address() == wallet.address and msg.load_coins() == 0
    assert msg.load_bit() and msg.load_bit()  # state init as a ref
    assert Address((0, msg.load_ref().hash)) == wallet.address
    assert msg.load_bit()
    body = msg.load_ref().begin_parse()
    sig = body.load_bytes(64)
    signing = body.to_cell()
    wallet.key.public_key().verify(sig, signing.hash)
    assert body.load_uint(32) == 698983191 and body.load_uint(32) == 1000
    assert body.load_uint(32) == 0 and body.load_uint(8) == 0 and body.load_uint(8) == 3
    with pytest.raises(w.WalletError):
        wallet.transfer([], seqno=0, valid_until=0)
