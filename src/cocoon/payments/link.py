"""A node's link to the chain for payments: its wallet, the root's terms, its channels.

Every node with payments on opens one: it loads the wallet key (which also
signs vouchers), reads the network id, prices, commission and close delays
from the root contract, and from then on looks up, deploys, tops up and
redeems channels. Lookups of other nodes' channels are cached briefly: a
payee checks a payer's channel when it connects and when a voucher would go
above the deposit it knows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..chain.channel import (
    ChannelConfig,
    ChannelParams,
    ChannelState,
    channel_init,
    decode_params,
    decode_state,
    raw_address,
)
from ..chain.ops import ChannelOps, ChannelOpsError
from ..chain.root import RootConfig, read_root
from ..chain.toncenter import ChainError, TonCenterClient
from ..chain.wallet import Wallet, WalletError, WalletV4, load_key_file, open_wallet
from ..config import PaymentsConfig
from ..pricing import Prices
from .errors import PaymentError
from .vouchers import SignedVoucher

log = logging.getLogger(__name__)

# How long a looked-up channel state is trusted before asking the chain again.
LOOKUP_TTL_S = 2.0


class ChainLinkError(PaymentError):
    """The chain could not be reached or refused what was asked."""


@dataclass(frozen=True)
class ChannelView:
    """A channel as the chain has it."""

    address: str
    params: ChannelParams
    state: ChannelState


class ChainLink:
    """One node's wallet and the network's root, on one toncenter endpoint."""

    def __init__(
        self,
        client: TonCenterClient,
        key: Ed25519PrivateKey,
        root_address: str,
        root: RootConfig,
        wallet: Wallet | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.wallet = WalletV4(client, key) if wallet is None else wallet
        self.root_address = root_address
        self.root = root
        self._views: dict[str, tuple[float, ChannelView]] = {}
        self._lock = asyncio.Lock()
        # The root's prices, made once per version of its parameters: every receipt a
        # node prices asks for them (at c=64, 10 µs of a client's request went there).
        self._prices: tuple[object, Prices] | None = None

    @classmethod
    async def open(cls, config: PaymentsConfig) -> ChainLink:
        if not config.key_file:
            raise ChainLinkError("payments need a wallet key file (payments.key_file)")
        if not config.root:
            raise ChainLinkError("payments need the root contract's address (payments.root)")
        try:
            key = load_key_file(Path(config.key_file))
        except (OSError, WalletError, ValueError) as exc:
            raise ChainLinkError(f"cannot load the wallet key {config.key_file}: {exc}") from exc
        client = TonCenterClient(config.chain_endpoint, api_key=config.chain_api_key or None)
        try:
            wallet = await open_wallet(client, key, config.wallet_version)
        except (ChainError, WalletError) as exc:
            await client.close()
            raise ChainLinkError(f"cannot open the {config.wallet_version} wallet: {exc}") from exc
        try:
            root_address = raw_address(config.root)
            root = await read_root(client, root_address)
        except Exception as exc:
            await client.close()
            raise ChainLinkError(f"cannot read the root contract {config.root}: {exc}") from exc
        return cls(client, key, root_address, root, wallet)

    async def close(self) -> None:
        await self.client.close()

    @property
    def network_id(self) -> int:
        return self.root.network_id

    @property
    def prices(self) -> Prices:
        params = self.root.params
        if self._prices is None or self._prices[0] is not params:
            self._prices = (params, params.prices())
        return self._prices[1]

    @property
    def commission_bp(self) -> int:
        return self.root.params.commission_bp

    @property
    def address(self) -> str:
        return self.wallet.raw_address

    @property
    def public_key(self) -> bytes:
        return self.wallet.public_key

    # -- channels this node pays into ----------------------------------------

    def payer_config(self, payee: str, close_delay: int, channel_id: int = 0) -> ChannelConfig:
        return ChannelConfig(
            network_id=self.network_id,
            channel_id=channel_id,
            payer=self.wallet.address,
            payee=payee,
            payer_key=self.public_key,
            close_delay=close_delay,
        )

    def ops(self, config: ChannelConfig) -> ChannelOps:
        return ChannelOps(self.client, self.wallet, config)

    async def open_channel(self, payee: str, close_delay: int, deposit: int) -> ChannelView:
        """This node's channel to `payee`, deployed with `deposit` if it is not yet."""
        ops = self.ops(self.payer_config(payee, close_delay))
        try:
            async with self._lock:  # one wallet: one transaction at a time
                if await ops.deploy(deposit):
                    log.info(
                        "deployed channel %s to %s with %d nanotons", ops.address, payee, deposit
                    )
        except (ChannelOpsError, ChainError, WalletError) as exc:
            raise ChainLinkError(f"cannot open the channel to {payee}: {exc}") from exc
        view = await self.lookup(ops.address, fresh=True)
        if view is None:
            raise ChainLinkError(f"channel {ops.address} is not on chain after deploying it")
        return view

    async def top_up(self, view: ChannelView, amount: int) -> ChannelView:
        ops = self.ops(_config_of(view.params))
        try:
            async with self._lock:
                await ops.top_up(amount)
        except (ChannelOpsError, ChainError, WalletError) as exc:
            raise ChainLinkError(f"cannot top up channel {view.address}: {exc}") from exc
        fresh = await self.lookup(view.address, fresh=True)
        return fresh if fresh is not None else view

    async def start_close(self, view: ChannelView) -> ChannelView:
        """Start closing a channel this node pays into: after its close delay the payer
        withdraws what was not redeemed; the payee may redeem until then."""
        ops = self.ops(_config_of(view.params))
        try:
            async with self._lock:
                await ops.close()
        except (ChannelOpsError, ChainError, WalletError) as exc:
            raise ChainLinkError(f"cannot close channel {view.address}: {exc}") from exc
        fresh = await self.lookup(view.address, fresh=True)
        return fresh if fresh is not None else view

    # -- channels that pay this node ------------------------------------------

    async def redeem(self, view: ChannelView, voucher: SignedVoucher) -> int:
        ops = self.ops(_config_of(view.params))
        try:
            async with self._lock:
                return await ops.redeem(voucher)
        except (ChannelOpsError, ChainError, WalletError) as exc:
            raise ChainLinkError(f"cannot redeem on channel {view.address}: {exc}") from exc

    async def lookup(self, address: str, *, fresh: bool = False) -> ChannelView | None:
        """The channel's parameters and state (None while it is not deployed)."""
        address = raw_address(address)
        cached = self._views.get(address)
        if cached is not None and not fresh and time.monotonic() - cached[0] < LOOKUP_TTL_S:
            return cached[1]
        try:
            info = await self.client.get_address_information(address)
            if not info.active:
                return None
            params = decode_params(await self.client.run_get_method(address, "params"))
            state = decode_state(await self.client.run_get_method(address, "state"))
        except (ChainError, ValueError, TypeError) as exc:
            raise ChainLinkError(f"cannot look up channel {address}: {exc}") from exc
        view = ChannelView(address, params, state)
        self._views[address] = (time.monotonic(), view)
        return view


def _config_of(params: ChannelParams) -> ChannelConfig:
    return ChannelConfig(
        network_id=params.network_id,
        channel_id=params.channel_id,
        payer=params.payer,
        payee=params.payee,
        payer_key=params.payer_key,
        close_delay=params.close_delay,
    )


def channel_address(config: ChannelConfig) -> str:
    return raw_address(channel_init(config)[2])
