"""A standard TON wallet (v4r2) for Cocoon's nodes: keys, address, signed transfers.

Keys come from a 24-word TON mnemonic (TON's own derivation: PBKDF2-SHA512 of the
words with the salt ``"TON default seed"``, the first 32 bytes being the Ed25519
seed) or a key file. Transfers are external messages signed with the wallet key,
sent through the toncenter API (TON mainnet/testnet or the local chain); the first
one carries the wallet's state init and deploys it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pytoniq_core.boc import Address, Builder, Cell
from pytoniq_core.crypto.keys import mnemonic_is_valid, mnemonic_new, mnemonic_to_private_key

from .channel import address_of, parse_address, raw_address, state_init_cell
from .toncenter import ChainError, TonCenterClient

__all__ = [
    "WALLET_V4R2_CODE",
    "WALLET_V4R2_CODE_HASH",
    "InternalMessage",
    "WalletError",
    "WalletV4",
    "internal_message",
    "key_from_mnemonic",
    "load_key_file",
    "new_mnemonic",
    "public_key_bytes",
    "save_key_file",
]

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

# Send modes (TON's SendRawMessage flags).
PAY_FEES_SEPARATELY = 1
IGNORE_ERRORS = 2


class WalletError(Exception):
    """A wallet operation failed (bad key material, message refused, not confirmed)."""


def new_mnemonic() -> list[str]:
    return [str(w) for w in mnemonic_new(24)]


def key_from_mnemonic(words: Sequence[str] | str) -> Ed25519PrivateKey:
    """The wallet key of a 24-word TON mnemonic (no password)."""
    ws = words.split() if isinstance(words, str) else list(words)
    if len(ws) != 24 or not mnemonic_is_valid(ws):
        raise WalletError("not a valid 24-word TON mnemonic")
    _pub, secret = mnemonic_to_private_key(ws)
    return Ed25519PrivateKey.from_private_bytes(bytes(secret)[:32])


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_key_file(path: Path) -> Ed25519PrivateKey:
    """A key file holds a 24-word mnemonic, or the 32-byte Ed25519 seed as 64 hex digits."""
    text = path.read_text().strip()
    words = text.split()
    if len(words) == 24:
        return key_from_mnemonic(words)
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise WalletError(f"{path}: neither a 24-word mnemonic nor a 32-byte hex seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def save_key_file(path: Path, words: Sequence[str]) -> None:
    """Write a mnemonic key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(" ".join(words) + "\n")


@dataclass(frozen=True)
class InternalMessage:
    """One outgoing message of a transfer. ``init``: (code, data) to deploy at ``dest``."""

    dest: Address | str
    value: int
    body: Cell | None = None
    init: tuple[Cell, Cell] | None = None
    bounce: bool = True
    mode: int = PAY_FEES_SEPARATELY | IGNORE_ERRORS


def _store_init_and_body(b: Builder, init: Cell | None, body: Cell | None) -> Cell:
    # init: Maybe (Either StateInit ^StateInit), always as a ref; body: Either X ^X
    b = b.store_bit(0) if init is None else b.store_bit(1).store_bit(1).store_ref(init)
    b = b.store_bit(0) if body is None else b.store_bit(1).store_ref(body)
    return b.end_cell()


def internal_message(m: InternalMessage) -> Cell:
    """``Message X`` with ``int_msg_info`` (src, lt and time are filled in by the sender)."""
    b = Builder().store_uint(0, 1)  # int_msg_info$0
    b = b.store_bit(1).store_bit(1 if m.bounce else 0).store_bit(0)  # ihr_disabled bounce bounced
    b = b.store_uint(0, 2).store_address(parse_address(m.dest))  # src: addr_none
    b = b.store_coins(m.value).store_bit(0)  # value: grams, no extra currencies
    b = b.store_coins(0).store_coins(0).store_uint(0, 64).store_uint(0, 32)
    init = None if m.init is None else state_init_cell(*m.init)
    return _store_init_and_body(b, init, m.body)


def external_message(dest: Address, body: Cell, init: Cell | None) -> Cell:
    """``Message X`` with ``ext_in_msg_info`` (src addr_none, import fee 0)."""
    b = Builder().store_uint(0b10, 2).store_uint(0, 2).store_address(dest).store_coins(0)
    return _store_init_and_body(b, init, body)


class WalletV4:
    """Wallet v4r2 of ``key`` on ``workchain``."""

    def __init__(
        self,
        client: TonCenterClient,
        key: Ed25519PrivateKey,
        *,
        workchain: int = 0,
        wallet_id: int | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.public_key = public_key_bytes(key)
        self.workchain = workchain
        self.wallet_id = DEFAULT_WALLET_ID + workchain if wallet_id is None else wallet_id
        self.code = WALLET_V4R2_CODE
        self.data = (
            Builder()
            .store_uint(0, 32)  # seqno
            .store_uint(self.wallet_id, 32)
            .store_bytes(self.public_key)
            .store_bit(0)  # no plugins
            .end_cell()
        )
        self.address: Address = address_of(self.code, self.data, workchain)
        # One transfer at a time: each needs the seqno the previous one moved on.
        self._send_lock = asyncio.Lock()

    @property
    def raw_address(self) -> str:
        return raw_address(self.address)

    async def is_deployed(self) -> bool:
        return (await self.client.get_address_information(self.raw_address)).active

    async def balance(self) -> int:
        return await self.client.get_balance(self.raw_address)

    async def seqno(self) -> int:
        """The wallet's seqno (0 while it is not deployed)."""
        r = await self.client.run_get_method(self.raw_address, "seqno")
        if r.exit_code != 0:
            info = await self.client.get_address_information(self.raw_address)
            if not info.active:
                return 0
            raise WalletError(f"seqno get-method exited with code {r.exit_code}")
        return r.int_at(0)

    def transfer(
        self,
        messages: Sequence[InternalMessage],
        *,
        seqno: int,
        valid_until: int,
        deploy: bool = False,
    ) -> Cell:
        """The signed external message carrying ``messages`` (at most 4)."""
        if not 1 <= len(messages) <= 4:
            raise WalletError("a v4 transfer carries 1 to 4 messages")
        b = Builder().store_uint(self.wallet_id, 32).store_uint(valid_until, 32)
        b = b.store_uint(seqno, 32).store_uint(0, 8)  # op 0: simple send
        for m in messages:
            b = b.store_uint(m.mode, 8).store_ref(internal_message(m))
        signing = b.end_cell()
        signature = self.key.sign(bytes(signing.hash))
        body = Builder().store_bytes(signature).store_cell(signing).end_cell()
        init = state_init_cell(self.code, self.data) if deploy else None
        return external_message(self.address, body, init)

    async def send(
        self,
        messages: Sequence[InternalMessage],
        *,
        ttl_s: int = 120,
        confirm_timeout_s: float = 60.0,
    ) -> int:
        """Sign and send ``messages``; deploys the wallet with its first transfer. Waits
        (bounded) until the wallet's seqno has moved on; returns the seqno used.
        Concurrent calls on one instance are serialised."""
        async with self._send_lock:
            return await self._send(messages, ttl_s, confirm_timeout_s)

    async def _send(
        self, messages: Sequence[InternalMessage], ttl_s: int, confirm_timeout_s: float
    ) -> int:
        info = await self.client.get_address_information(self.raw_address)
        deploy = not info.active
        seqno = 0 if deploy else await self.seqno()
        now = info.sync_utime or int(time.time())  # the chain's clock (the local one may run ahead)
        ext = self.transfer(messages, seqno=seqno, valid_until=now + ttl_s, deploy=deploy)
        try:
            await self.client.send_boc(ext.to_boc())
        except ChainError as e:
            raise WalletError(f"the wallet's external message was refused: {e.message}") from e
        await self.wait_seqno_above(seqno, confirm_timeout_s)
        return seqno

    async def wait_seqno_above(self, seqno: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            try:
                if await self.seqno() > seqno:
                    return
            except ChainError:
                pass
            if time.monotonic() >= deadline:
                raise WalletError(f"seqno did not move past {seqno} within {timeout_s:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
