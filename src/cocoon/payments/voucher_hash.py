"""The voucher cell's representation hash, computed directly.

A voucher is one ordinary cell with no references (``contracts/README.md``):
``tag:uint32 networkId:int32 channel:MsgAddressInt seqno:uint32 total:Coins``.
Its representation hash is sha256(d1 ‖ d2 ‖ data padded with a 1 bit and
zeros), the rule TVM uses. Building the cell with pytoniq-core costs tens of
microseconds per voucher; every request signs and checks one, so this module
writes the same bits with integer arithmetic (a test compares it with
pytoniq-core's hash over random vouchers).
"""

from __future__ import annotations

import hashlib

from ..chain.channel import VOUCHER_TAG


def voucher_hash(network_id: int, workchain: int, account: bytes, seqno: int, total: int) -> bytes:
    """sha256 representation hash of the voucher cell (what the payer signs)."""
    # Each field must fit its width: an out-of-range value would spill into its
    # neighbour and collide with another voucher's hash.
    if len(account) != 32:
        raise ValueError("an account id is 32 bytes")
    if not -(2**31) <= network_id < 2**31:
        raise ValueError(f"network id {network_id} is not an int32")
    if not -128 <= workchain < 128:
        raise ValueError(f"workchain {workchain} is not an int8")
    if not 0 <= seqno < 2**32:
        raise ValueError(f"seqno {seqno} is not a uint32")
    if total < 0:
        raise ValueError("a negative total")
    coins_len = (total.bit_length() + 7) // 8
    if coins_len > 15:
        raise ValueError("total out of coins range")
    value = VOUCHER_TAG
    value = (value << 32) | (network_id & 0xFFFFFFFF)
    # addr_std$10 anycast:nothing$0 workchain_id:int8 address:bits256
    value = (value << 3) | 0b100
    value = (value << 8) | (workchain & 0xFF)
    value = (value << 256) | int.from_bytes(account, "big")
    value = (value << 32) | seqno
    value = (value << 4) | coins_len
    value = (value << (8 * coins_len)) | total
    bits = 32 + 32 + 267 + 32 + 4 + 8 * coins_len
    full, rest = divmod(bits, 8)
    if rest:
        # Completion tag: a 1 bit, then zeros up to the byte boundary.
        pad = 8 - rest
        value = (value << pad) | (1 << (pad - 1))
        data = value.to_bytes(full + 1, "big")
    else:
        data = value.to_bytes(full, "big")
    d2 = full + (full + (1 if rest else 0))
    return hashlib.sha256(bytes((0, d2)) + data).digest()
