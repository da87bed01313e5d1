"""What every standard TON wallet version shares: outgoing messages and confirmed sends.

A wallet version (:mod:`.wallet_v4`, :mod:`.wallet_v5`) supplies its code, its init
data and how it signs a transfer (:meth:`Wallet.transfer`); this module sends that
external message through the toncenter API, with the state init on first use (a
wallet is deployed by its own first transfer), and waits until the wallet's seqno has
moved on. Nodes and the CLI hold a :class:`Wallet` and do not care which version it is.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pytoniq_core.boc import Address, Builder, Cell

from .channel import address_of, parse_address, raw_address, state_init_cell
from .toncenter import ChainError, TonCenterClient

__all__ = [
    "IGNORE_ERRORS",
    "PAY_FEES_SEPARATELY",
    "InternalMessage",
    "Wallet",
    "WalletError",
    "external_message",
    "internal_message",
    "public_key_bytes",
]

# Send modes (TON's SendRawMessage flags).
PAY_FEES_SEPARATELY = 1
IGNORE_ERRORS = 2


class WalletError(Exception):
    """A wallet operation failed (bad key material, message refused, not confirmed)."""


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


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


class Wallet(ABC):
    """A standard wallet contract of ``key``: its code and init data fix its address.

    Subclasses give :attr:`version` and :attr:`max_messages`, build ``data`` and
    implement :meth:`_signed_body`.
    """

    version: ClassVar[str]
    max_messages: ClassVar[int]  # what one transfer may carry

    def __init__(
        self,
        client: TonCenterClient,
        key: Ed25519PrivateKey,
        *,
        code: Cell,
        data: Cell,
        workchain: int,
    ) -> None:
        self.client = client
        self.key = key
        self.public_key = public_key_bytes(key)
        self.workchain = workchain
        self.code = code
        self.data = data
        self.address: Address = address_of(code, data, workchain)
        # One transfer at a time: each needs the seqno the previous one moved on.
        self._send_lock = asyncio.Lock()

    @property
    def raw_address(self) -> str:
        return raw_address(self.address)

    def transfer(
        self,
        messages: Sequence[InternalMessage],
        *,
        seqno: int,
        valid_until: int,
        deploy: bool = False,
    ) -> Cell:
        """The signed external message carrying ``messages`` (1 to :attr:`max_messages`);
        with ``deploy``, it also carries the wallet's state init."""
        if not 1 <= len(messages) <= self.max_messages:
            raise WalletError(
                f"a {self.version} transfer carries 1 to {self.max_messages} messages"
            )
        body = self._signed_body(messages, seqno, valid_until)
        init = state_init_cell(self.code, self.data) if deploy else None
        return external_message(self.address, body, init)

    @abstractmethod
    def _signed_body(
        self, messages: Sequence[InternalMessage], seqno: int, valid_until: int
    ) -> Cell:
        """The external message's body: ``messages`` signed by the key, in this version's
        layout."""

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
