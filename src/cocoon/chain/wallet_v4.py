"""Wallet v4r2: the standard wallet Cocoon's nodes have used so far (and the default).

Init data ``seqno:32 subwallet_id:32 public_key:256 plugins:(HashmapE)``; a transfer
is ``signature:512`` followed by ``subwallet_id valid_until seqno op:8`` and up to 4
``mode:8 ^message`` pairs; the signature comes FIRST and covers the rest.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Builder, Cell

from .toncenter import TonCenterClient
from .wallet_base import InternalMessage, Wallet, internal_message, public_key_bytes

__all__ = ["DEFAULT_WALLET_ID", "WALLET_V4R2_CODE", "WALLET_V4R2_CODE_HASH", "WalletV4"]

# Wallet v4r2, the standard public code: the BoC that TON's reference SDKs ship
# (ton-org/ton `src/wallets/WalletContractV4.ts`, tonweb's `WalletV4ContractR2`, and
# ton-blockchain/wallet-contract `wallet-v4-code.fc` compiled); its code hash is
# feb5ff68…9dabd5c0, the one explorers label "wallet_v4r2".
WALLET_V4R2_CODE_BOC = base64.b64decode(
    "te6cckECFAEAAtQAART/APSkE/S88sgLAQIBIAIDAgFIBAUE+PKDCNcYINMf0x/THwL4I7vyZO1E0NMf0x/T//QE0VFDuvKh"
    "UVG68qIF+QFUEGT5EPKj+AAkpMjLH1JAyx9SMMv/UhD0AMntVPgPAdMHIcAAn2xRkyDXSpbTB9QC+wDoMOAhwAHjACHAAuMA"
    "AcADkTDjDQOkyMsfEssfy/8QERITAubQAdDTAyFxsJJfBOAi10nBIJJfBOAC0x8hghBwbHVnvSKCEGRzdHK9sJJfBeAD+kAw"
    "IPpEAcjKB8v/ydDtRNCBAUDXIfQEMFyBAQj0Cm+hMbOSXwfgBdM/yCWCEHBsdWe6kjgw4w0DghBkc3RyupJfBuMNBgcCASAI"
    "CQB4AfoA9AQw+CdvIjBQCqEhvvLgUIIQcGx1Z4MesXCAGFAEywUmzxZY+gIZ9ADLaRfLH1Jgyz8gyYBA+wAGAIpQBIEBCPRZ"
    "MO1E0IEBQNcgyAHPFvQAye1UAXKwjiOCEGRzdHKDHrFwgBhQBcsFUAPPFiP6AhPLassfyz/JgED7AJJfA+ICASAKCwBZvSQr"
    "b2omhAgKBrkPoCGEcNQICEekk30pkQzmkD6f+YN4EoAbeBAUiYcVnzGEAgFYDA0AEbjJftRNDXCx+AA9sp37UTQgQFA1yH0"
    "BDACyMoHy//J0AGBAQj0Cm+hMYAIBIA4PABmtznaiaEAga5Drhf/AABmvHfaiaEAQa5DrhY/AAG7SB/oA1NQi+QAFyMoHFcv/"
    "ydB3dIAYyMsFywIizxZQBfoCFMtrEszMyXP7AMhAFIEBCPRR8qcCAHCBAQjXGPoA0z/IVCBHgQEI9FHyp4IQbm90ZXB0gBjI"
    "ywXLAlAGzxZQBPoCFMtqEssfyz/Jc/sAAgBsgQEI1xj6ANM/MFIkgQEI9Fnyp4IQZHN0cnB0gBjIywXLAlAFzxZQA/oCE8tq"
    "yx8Syz/Jc/sAAAr0AMntVGliJeU="
)
WALLET_V4R2_CODE: Cell = Cell.one_from_boc(WALLET_V4R2_CODE_BOC)
WALLET_V4R2_CODE_HASH = "feb5ff6820e2ff0d9483e7e0d62c817d846789fb4ae580c878866d959dabd5c0"
DEFAULT_WALLET_ID = 698983191  # + workchain: the subwallet id every standard wallet app uses


class WalletV4(Wallet):
    """Wallet v4r2 of ``key`` on ``workchain``."""

    version = "v4r2"
    max_messages = 4

    def __init__(
        self,
        client: TonCenterClient,
        key: Ed25519PrivateKey,
        *,
        workchain: int = 0,
        wallet_id: int | None = None,
    ) -> None:
        self.wallet_id = DEFAULT_WALLET_ID + workchain if wallet_id is None else wallet_id
        data = (
            Builder()
            .store_uint(0, 32)  # seqno
            .store_uint(self.wallet_id, 32)
            .store_bytes(public_key_bytes(key))
            .store_bit(0)  # no plugins
            .end_cell()
        )
        super().__init__(client, key, code=WALLET_V4R2_CODE, data=data, workchain=workchain)

    def _signed_body(
        self, messages: Sequence[InternalMessage], seqno: int, valid_until: int
    ) -> Cell:
        b = Builder().store_uint(self.wallet_id, 32).store_uint(valid_until, 32)
        b = b.store_uint(seqno, 32).store_uint(0, 8)  # op 0: simple send
        for m in messages:
            b = b.store_uint(m.mode, 8).store_ref(internal_message(m))
        signing = b.end_cell()
        signature = self.key.sign(bytes(signing.hash))
        return Builder().store_bytes(signature).store_cell(signing).end_cell()
