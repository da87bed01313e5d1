"""Following the root contract: one snapshot, kept current by polling its version.

Every node reads the root at start and then asks for its `version` every
`poll_interval_s` (one cheap get-method); only when the version moved does it
read the whole state, install new `RootRules` and tell its listeners, which
re-check the peers they hold. Stakes change without the root's version
moving, so the stakes of peers in use are re-read on the same beat.

Prices follow versions too: a request carries the root version its client
sealed it under, and every node bills it at that version's prices
(`prices_at`), so a price change applies to new requests, never to one in
flight, and the three books of a request agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from ..chain.channel import raw_address
from ..chain.root import RootState, read_root_state, read_root_version
from ..chain.root_cells import RootParams
from ..chain.stake import StakeState, read_stake, stake_address
from ..chain.toncenter import TonCenterClient
from ..config import PaymentsConfig, RegistryConfig
from ..pricing import Prices
from ..recent import remember
from .rules import ROOT_PROXIES, RootRules
from .tiers import DEFAULT_ROOT_PARAMS, tier_prices

log = logging.getLogger(__name__)

Listener = Callable[[RootRules], Awaitable[None]]
# Versions whose prices are kept for requests still in flight.
PRICE_HISTORY = 64
# Stakes not asked for in this many polls are no longer followed.
STAKE_IDLE_POLLS = 30


class RegistryError(Exception):
    """The root contract could not be read."""


def request_prices(
    follower: RootFollower | None,
    own: Prices | None,
    root_version: int,
    tier: str,
    replicas: int,
) -> Prices:
    """What one worker's share of a request is billed at: the prices of the root version
    it was sealed under when the root is followed, else this node's own price list; at
    the request's trust tier either way (the root's multipliers, or their defaults)."""
    if follower is not None:
        return follower.prices_at(root_version, tier, replicas)
    if own is None:
        raise RegistryError("no price list: neither a root followed nor payments configured")
    return tier_prices(own, tier, replicas, DEFAULT_ROOT_PARAMS.tier_bp)


class RootFollower:
    """One node's view of the root: rules, prices by version, stakes of its peers."""

    def __init__(
        self,
        client: TonCenterClient,
        root_address: str,
        *,
        poll_interval_s: float = 2.0,
        check_stakes: bool = True,
    ) -> None:
        self.client = client
        self.root_address = root_address
        self.poll_interval_s = poll_interval_s
        self.check_stakes = check_stakes
        self._rules: RootRules | None = None
        # Per root version: its prices, and its params (for the trust tiers' multipliers).
        self._prices: OrderedDict[int, tuple[Prices, RootParams]] = OrderedDict()
        self._stakes: dict[str, tuple[StakeState, int]] = {}  # address -> (state, last asked poll)
        # Stakes asked for that the chain did not answer: read again at every poll.
        self._unread: set[str] = set()
        self._polls = 0
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self.polled_at = 0.0
        self.changes = 0
        self.errors = 0

    # -- reading -------------------------------------------------------------

    async def start(self) -> RootRules:
        """Read the whole root once; RegistryError if it cannot be read."""
        try:
            state = await read_root_state(self.client, self.root_address)
        except Exception as exc:
            raise RegistryError(f"cannot read the root {self.root_address}: {exc}") from exc
        self._install(state)
        self.polled_at = time.monotonic()
        return self.rules

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and retried on the next beat."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll()
            except Exception as exc:
                self.errors += 1
                log.warning("reading the root %s failed: %s", self.root_address, exc)

    async def poll(self) -> bool:
        """Follow the root one step; True if its version moved."""
        async with self._lock:
            self._polls += 1
            moved = False
            version = await read_root_version(self.client, self.root_address)
            if self._rules is None or version != self._rules.version:
                state = await read_root_state(self.client, self.root_address)
                self._install(state)
                moved = True
            staked = await self._refresh_stakes()
            self.polled_at = time.monotonic()
        if moved:
            self.changes += 1
            log.info("root %s is at version %d", self.root_address, self.rules.version)
        if moved or staked:
            # A stake that fell below the minimum matters as much as a list change.
            for listener in list(self._listeners):
                try:
                    await listener(self.rules)
                except Exception:
                    log.exception("a root listener failed")
        return moved

    async def ensure(self, version: int) -> None:
        """A peer names a root version newer than ours: catch up now, not at the next beat."""
        if version > self.version:
            await self.poll()

    def _install(self, state: RootState) -> None:
        self._rules = RootRules(state)
        try:
            prices = (state.params.prices(), state.params)
        except ValueError as exc:
            log.warning("root version %d has prices this node cannot use: %s", state.version, exc)
        else:
            remember(self._prices, state.version, prices, PRICE_HISTORY)

    # -- what nodes ask ------------------------------------------------------

    @property
    def rules(self) -> RootRules:
        if self._rules is None:
            raise RegistryError("the root has not been read yet")
        return self._rules

    @property
    def version(self) -> int:
        return self._rules.version if self._rules is not None else -1

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def prices_at(self, version: int, tier: str = "", replicas: int = 1) -> Prices:
        """The prices of root `version`, or the current ones for a version not seen
        (0: a peer that does not say), for one worker's share of a request of `tier`."""
        found = self._prices.get(version)
        prices, params = found if found is not None else next(reversed(self._prices.values()))
        return tier_prices(prices, tier, replicas, params.tier_bp)

    def stake_address(self, owner: str, node_key: bytes) -> str:
        return stake_address(self.rules.state.network_id, self.root_address, owner, node_key)

    async def stake(self, owner: str, node_key: bytes) -> StakeState | None:
        """A peer's stake (cached between polls); None when stakes are not checked."""
        if not self.check_stakes or not owner:
            return None  # no wallet named, no stake to find: the rules refuse it
        address = self.stake_address(owner, node_key)
        cached = self._stakes.get(address)
        if cached is not None:
            self._stakes[address] = (cached[0], self._polls)
            return cached[0]
        try:
            state = await read_stake(self.client, address)
        except Exception as exc:
            # Listeners hear of it once the chain answers (the next poll tries again).
            self._unread.add(address)
            raise RegistryError(f"the stake {address} could not be read: {exc}") from exc
        self._unread.discard(address)
        self._stakes[address] = (state, self._polls)
        return state

    def cached_stake(self, owner: str, node_key: bytes) -> StakeState | None:
        if not owner:
            return None
        cached = self._stakes.get(self.stake_address(owner, node_key))
        return cached[0] if cached is not None else None

    async def _refresh_stakes(self) -> bool:
        """Read the followed stakes again; True if one changed."""
        changed = False
        for address in list(self._unread):
            with contextlib.suppress(Exception):
                self._stakes[address] = (await read_stake(self.client, address), self._polls)
                self._unread.discard(address)
                changed = True
        for address, (before, asked) in list(self._stakes.items()):
            if self._polls - asked > STAKE_IDLE_POLLS:
                del self._stakes[address]
                continue
            now = await read_stake(self.client, address)
            changed |= now != before
            self._stakes[address] = (now, asked)
        return changed

    def status(self, *, images_enforced: bool) -> dict[str, object]:
        """The root as this node follows it, for /jsonstats and /v1/attestation."""
        if self._rules is None:
            return {"root": self.root_address, "version": None}
        state = self._rules.state
        p = state.params
        return {
            "root": self.root_address,
            "version": state.version,
            "network_id": state.network_id,
            "poll_interval_s": self.poll_interval_s,
            "polled_s_ago": round(time.monotonic() - self.polled_at, 1),
            # With provider none there is no image hash: the lists apply to models only.
            "images_enforced": images_enforced,
            "proxy_images": sorted(state.proxy_images),
            "worker_images": sorted(state.worker_images),
            "models": sorted(state.models),
            "proxies": [
                {"wallet": x.wallet, "endpoint": x.endpoint, "node_key": x.node_key.hex()}
                for x in state.proxies
            ],
            "min_worker_stake_nano": p.min_worker_stake,
            "min_proxy_stake_nano": p.min_proxy_stake,
            "unbonding_delay_s": p.unbonding_delay,
            "stakes_checked": self.check_stakes,
        }


class Following:
    """A node's follower of the root and the task that polls it (none: no root)."""

    def __init__(self, follower: RootFollower | None, own_client: bool) -> None:
        self.follower = follower
        self._own_client = own_client
        self._task = asyncio.create_task(follower.run()) if follower is not None else None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.follower is not None and self._own_client:
            await self.follower.client.close()


async def follow_root(
    payments: PaymentsConfig,
    registry: RegistryConfig,
    client: TonCenterClient | None,
    *,
    proxies: list[str] = [],  # noqa: B006 - read only
) -> Following:
    """Read the root a node is configured with and follow it (on `client`, the node's
    payments connection, when it has one). No root configured, or `registry.follow`
    off: nothing is followed, which `proxies = ["root"]` cannot do without."""
    if not (registry.follow and payments.root and payments.chain_endpoint):
        if ROOT_PROXIES in proxies:
            raise RegistryError(
                'proxies = ["root"] needs the root contract: set payments.root and'
                " payments.chain_endpoint, with registry.follow on"
            )
        return Following(None, own_client=False)
    own = client is None
    if client is None:
        client = TonCenterClient(payments.chain_endpoint, api_key=payments.chain_api_key or None)
    follower = RootFollower(
        client,
        raw_address(payments.root),
        poll_interval_s=registry.poll_interval_s,
        check_stakes=registry.check_stakes,
    )
    try:
        await follower.start()
    except RegistryError:
        if own:
            await client.close()
        raise
    log.info("following root %s at version %d", follower.root_address, follower.version)
    return Following(follower, own_client=own)
