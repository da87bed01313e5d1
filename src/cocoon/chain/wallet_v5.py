"""Wallet v5r1 ("W5"), TON's current default wallet (ton-blockchain/wallet-contract-v5).

Init data ``is_signature_allowed:1 seqno:32 wallet_id:32 public_key:256
extensions:(HashmapE 256 int1)``. ``wallet_id`` binds the wallet to one network: it
is the network's global id (config param 19: -239 mainnet, -3 testnet) XOR a client
context ``1 | workchain:int8 | version:uint8 (0 = v5r1) | subwallet:uint15``. One key
therefore has different v5r1 addresses on mainnet and testnet, and a transfer signed
for one cannot be replayed on the other (v4r2 has neither property).

A transfer (``external_signed``) is::

    0x7369676e wallet_id:32 valid_until:32 seqno:32
    out_actions:(Maybe ^OutList) has_other_actions:1 signature:512

The signature comes LAST (v4r2 puts it first) and covers the hash of everything
before it, opcode included. ``OutList`` is TVM's own action list (c5): each cell holds
``^prev action_send_msg#0ec3c86d mode:8 ^message``, the first message innermost.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Builder, Cell

from .toncenter import TonCenterClient
from .wallet_base import (
    IGNORE_ERRORS,
    InternalMessage,
    Wallet,
    WalletError,
    internal_message,
    public_key_bytes,
)

__all__ = [
    "MAINNET_GLOBAL_ID",
    "TESTNET_GLOBAL_ID",
    "V5R1_MAX_MESSAGES",
    "WALLET_V5R1_CODE",
    "WALLET_V5R1_CODE_HASH",
    "WalletV5R1",
    "wallet_id_v5r1",
]

# Wallet v5r1, the standard public code: ton-blockchain/wallet-contract-v5
# `build/wallet_v5.compiled.json`, the BoC ton-org/ton's `WalletContractV5R1` ships; its
# code hash is 20834b7b…52d2b72f, the one explorers and liteservers label "wallet v5 r1".
WALLET_V5R1_CODE_BOC = base64.b64decode(
    "te6cckECFAEAAoEAART/APSkE/S88sgLAQIBIAINAgFIAwQC3NAg10nBIJFbj2Mg1wsfIIIQZXh0br0hghBzaW50vbCSXwPg"
    "ghBleHRuuo60gCDXIQHQdNch+kAw+kT4KPpEMFi9kVvg7UTQgQFB1yH0BYMH9A5voTGRMOGAQNchcH/bPOAxINdJgQKAuZEw"
    "4HDiEA8CASAFDAIBIAYJAgFuBwgAGa3OdqJoQCDrkOuF/8AAGa8d9qJoQBDrkOuFj8ACAUgKCwAXsyX7UTQcdch1wsfgABGy"
    "YvtRNDXCgCAAGb5fD2omhAgKDrkPoCwBAvIOAR4g1wsfghBzaWduuvLgin8PAeaO8O2i7fshgwjXIgKDCNcjIIAg1yHTH9Mf"
    "0x/tRNDSANMfINMf0//XCgAK+QFAzPkQmiiUXwrbMeHywIffArNQB7Dy0IRRJbry4IVQNrry4Ib4I7vy0IgikvgA3gGkf8jK"
    "AMsfAc8Wye1UIJL4D95w2zzYEAP27aLt+wL0BCFukmwhjkwCIdc5MHCUIccAs44tAdcoIHYeQ2wg10nACPLgkyDXSsAC8uCT"
    "INcdBscSwgBSMLDy0InXTNc5MAGk6GwShAe78uCT10rAAPLgk+1V4tIAAcAAkVvg69csCBQgkXCWAdcsCBwS4lIQseMPINdK"
    "ERITAJYB+kAB+kT4KPpEMFi68uCR7UTQgQFB1xj0BQSdf8jKAEAEgwf0U/Lgi44UA4MH9Fvy4Iwi1woAIW4Bs7Dy0JDiyFAD"
    "zxYS9ADJ7VQAcjDXLAgkji0h8uCS0gDtRNDSAFETuvLQj1RQMJExnAGBAUDXIdcKAPLgjuLIygBYzxbJ7VST8sCN4gAQk1vb"
    "MeHXTNC01sNe"
)
WALLET_V5R1_CODE: Cell = Cell.one_from_boc(WALLET_V5R1_CODE_BOC)
WALLET_V5R1_CODE_HASH = "20834b7b72b112147e1b2fb457b84e74d1a30f04f737d4f62a668e9552d2b72f"

# TON's network global ids (config param 19).
MAINNET_GLOBAL_ID = -239
TESTNET_GLOBAL_ID = -3

SIGNED_EXTERNAL = 0x7369676E  # "sign"
ACTION_SEND_MSG = 0x0EC3C86D
# The contract refuses an action list of more than 255 actions (error::invalid_c5).
V5R1_MAX_MESSAGES = 255


def wallet_id_v5r1(network_global_id: int, *, workchain: int = 0, subwallet: int = 0) -> int:
    """The 32-bit ``wallet_id`` standard wallet apps give a v5r1 wallet: the network's
    global id XOR the client context (``1 | workchain | version 0 | subwallet``)."""
    if not -(2**31) <= network_global_id < 2**31:
        raise ValueError(f"network global id {network_global_id} is not a 32-bit integer")
    if not -128 <= workchain <= 127:
        raise ValueError(f"workchain {workchain} does not fit 8 bits")
    if not 0 <= subwallet < 2**15:
        raise ValueError(f"subwallet {subwallet} does not fit 15 bits")
    context = (1 << 31) | ((workchain & 0xFF) << 23) | (0 << 15) | subwallet
    return (network_global_id & 0xFFFF_FFFF) ^ context


class WalletV5R1(Wallet):
    """Wallet v5r1 of ``key`` on the network ``network_global_id`` (mainnet by default,
    as wallet apps do; the local chain runs mainnet's configuration too)."""

    version = "v5r1"
    max_messages = V5R1_MAX_MESSAGES

    def __init__(
        self,
        client: TonCenterClient,
        key: Ed25519PrivateKey,
        *,
        network_global_id: int = MAINNET_GLOBAL_ID,
        workchain: int = 0,
        subwallet: int = 0,
    ) -> None:
        self.network_global_id = network_global_id
        self.subwallet = subwallet
        self.wallet_id = wallet_id_v5r1(network_global_id, workchain=workchain, subwallet=subwallet)
        data = (
            Builder()
            .store_bit(1)  # is_signature_allowed
            .store_uint(0, 32)  # seqno
            .store_uint(self.wallet_id, 32)
            .store_bytes(public_key_bytes(key))
            .store_bit(0)  # no extensions
            .end_cell()
        )
        super().__init__(client, key, code=WALLET_V5R1_CODE, data=data, workchain=workchain)

    def _signed_body(
        self, messages: Sequence[InternalMessage], seqno: int, valid_until: int
    ) -> Cell:
        for m in messages:
            # The contract bumps its seqno and commits BEFORE it checks the actions, then
            # throws on an external send without IGNORE_ERRORS: the transfer would cost a
            # seqno and send nothing. Refuse it here instead.
            if not m.mode & IGNORE_ERRORS:
                raise WalletError(
                    f"a v5r1 transfer needs send mode +{IGNORE_ERRORS} (mode {m.mode})"
                )
        actions = Builder().end_cell()  # out_list_empty
        for m in messages:
            actions = (
                Builder()
                .store_ref(actions)
                .store_uint(ACTION_SEND_MSG, 32)
                .store_uint(m.mode, 8)
                .store_ref(internal_message(m))
                .end_cell()
            )
        signing = (
            Builder()
            .store_uint(SIGNED_EXTERNAL, 32)
            .store_uint(self.wallet_id, 32)
            .store_uint(valid_until, 32)
            .store_uint(seqno, 32)
            .store_bit(1)  # out_actions: Just ^OutList
            .store_ref(actions)
            .store_bit(0)  # has_other_actions: none (no extension changes)
            .end_cell()
        )
        signature = self.key.sign(bytes(signing.hash))
        return Builder().store_cell(signing).store_bytes(signature).end_cell()
