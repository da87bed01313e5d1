"""The root contract (``contracts/contracts/root.tolk``) on chain: the network's registry.

Reading it (:func:`read_root` for the terms a payment node needs, :func:`read_root_state`
for everything, :func:`read_root_version` to follow changes), deploying it, and the
owner's updates (:func:`send_root_update`). The cells, bodies and exit codes live in
:mod:`cocoon.chain.root_cells` and are re-exported here, so ``cocoon.chain.root`` is
the one import for the root.

A read of several get-methods is made consistent by the version counter: every
accepted update bumps it, so when ``version()`` after the reads equals the version
``config()`` answered, no update landed in between (otherwise the reads are retried).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from pytoniq_core.boc import Address, Builder, Cell
from pytoniq_core.boc.hashmap import HashMap

from .channel import raw_address
from .local import LocalChainClient
from .root_cells import (
    ROOT_EXIT_MEANINGS,
    ROOT_FEE_FORWARD,
    ROOT_FEE_UPDATE,
    TRUST_TIERS,
    HashKind,
    RegisteredProxy,
    RootErr,
    RootOp,
    RootParams,
    RootSlashing,
    market_cell,
    params_cell,
    parse_proxy_entry,
    proxy_entry_cell,
    root_code,
    root_data,
    root_exit_meaning,
    root_init,
    slashing_cell,
)
from .root_messages import (
    cancel_slash_body,
    set_hash_body,
    set_owner_body,
    set_params_body,
    set_proxy_body,
    set_slashing_body,
    set_verifier_body,
    submit_verdict_body,
)
from .toncenter import ChainError, GetMethodResult, TonCenterClient, TvmCell, TvmSlice
from .transactions import failure_meaning, poll, send_and_find, tx_outcome
from .wallet import InternalMessage, Wallet

__all__ = [
    "ROOT_EXIT_MEANINGS",
    "ROOT_FEE_FORWARD",
    "ROOT_FEE_UPDATE",
    "TRUST_TIERS",
    "BadRootAnswer",
    "HashKind",
    "RegisteredProxy",
    "RootConfig",
    "RootErr",
    "RootError",
    "RootNotDeployed",
    "RootOp",
    "RootParams",
    "RootSlashing",
    "RootState",
    "RootUpdateRefused",
    "RootUpdateTimeout",
    "cancel_slash_body",
    "deploy_root",
    "deploy_root_from_wallet",
    "market_cell",
    "params_cell",
    "parse_proxy_entry",
    "proxy_entry_cell",
    "read_root",
    "read_root_slashing",
    "read_root_state",
    "read_root_version",
    "root_code",
    "root_data",
    "root_exit_meaning",
    "root_init",
    "send_root_update",
    "set_hash_body",
    "set_owner_body",
    "set_params_body",
    "set_proxy_body",
    "set_slashing_body",
    "set_verifier_body",
    "slashing_cell",
    "submit_verdict_body",
]

TON = 1_000_000_000
# Reads retried when an update lands between them (each try is a few get-methods).
_CONSISTENT_READ_TRIES = 5


class RootError(Exception):
    """The root contract could not be read or updated."""


class RootNotDeployed(RootError):
    """No root contract is active at that address."""


class BadRootAnswer(RootError):
    """The account answered a root get-method with something that is not a root's answer."""


class RootUpdateRefused(RootError):
    """The root's transaction for an owner update failed: ``exit_code`` of its compute
    phase (:class:`RootErr`) or, with ``phase == "action"``, the action phase's result
    code; ``meaning`` says what it means."""

    def __init__(self, root: str, exit_code: int, *, phase: str = "compute") -> None:
        self.root, self.exit_code, self.phase = root, exit_code, phase
        not_deployed = "no root contract at this address"
        self.meaning = failure_meaning(exit_code, phase, ROOT_EXIT_MEANINGS, not_deployed)
        super().__init__(f"the root {root} refused the update: {self.meaning} (exit {exit_code})")


class RootUpdateTimeout(RootError):
    """The update left the owner's wallet but its effect on the root was not seen in time."""


@dataclass(frozen=True)
class RootConfig:
    """What a payment node needs: the version counter (bumped by every owner update), the
    network id and the params."""

    version: int
    network_id: int
    params: RootParams


@dataclass(frozen=True)
class RootState:
    """Everything the root holds, read consistently at one version."""

    version: int
    network_id: int
    owner: str  # raw address
    params: RootParams  # including the stakes, unbonding delay and tier multipliers
    proxy_images: frozenset[str]  # lowercase 64-hex
    worker_images: frozenset[str]
    models: frozenset[str]  # lowercase 64-hex Merkle roots
    proxies: tuple[RegisteredProxy, ...]  # sorted by wallet
    # verifier keys, dispute delay and verdict quorum (cocoon.chain.slashing)
    slashing: RootSlashing = field(default_factory=RootSlashing)


# -- reads ------------------------------------------------------------------------------


async def _get(client: TonCenterClient, address: str, method: str) -> GetMethodResult:
    try:
        r = await client.run_get_method(address, method)
    except ChainError:
        # toncenter refuses get-methods on accounts without code; the local chain answers -13.
        if not (await client.get_address_information(address)).active:
            raise RootNotDeployed(f"no root contract at {address} (account not active)") from None
        raise
    if r.exit_code != 0:
        if not (await client.get_address_information(address)).active:
            raise RootNotDeployed(f"no root contract at {address} (account not active)")
        raise BadRootAnswer(f"{method}() at {address} exited with code {r.exit_code}")
    return r


def _decode_params(config: GetMethodResult, market: GetMethodResult) -> tuple[int, int, RootParams]:
    try:
        n = [config.int_at(i) for i in range(12)]
        m = [market.int_at(i) for i in range(8)]
        params = RootParams(
            base_price_nano=n[2],
            prompt_bp=n[3],
            cached_bp=n[4],
            completion_bp=n[5],
            reasoning_bp=n[6],
            commission_bp=n[7],
            client_close_delay=n[8],
            worker_close_delay=n[9],
            min_client_deposit=n[10],
            min_proxy_deposit=n[11],
            min_worker_stake=m[0],
            min_proxy_stake=m[1],
            unbonding_delay=m[2],
            **{f"tier_{t}_bp": v for t, v in zip(TRUST_TIERS, m[3:], strict=True)},
        )
    except (IndexError, TypeError, ValueError) as e:
        raise BadRootAnswer(
            f"config()/market() answered {config.stack!r}, {market.stack!r}: {e}"
        ) from None
    return n[0], n[1], params


async def read_root_version(client: TonCenterClient, address: str) -> int:
    """The root's ``version()``: moves with every accepted owner update."""
    r = await _get(client, address, "version")
    try:
        return r.int_at(0)
    except (IndexError, TypeError) as e:
        raise BadRootAnswer(f"version() at {address} answered {r.stack!r}: {e}") from None


async def _consistent(client: TonCenterClient, address: str, version: int) -> bool:
    return await read_root_version(client, address) == version


async def read_root(client: TonCenterClient, address: str) -> RootConfig:
    """The root's ``config()`` and ``market()``. Raises :class:`RootNotDeployed` when no
    contract is active at ``address``, :class:`BadRootAnswer` when the one there is not
    a root."""
    for _ in range(_CONSISTENT_READ_TRIES):
        config = await _get(client, address, "config")
        market = await _get(client, address, "market")
        version, network_id, params = _decode_params(config, market)
        if await _consistent(client, address, version):
            return RootConfig(version=version, network_id=network_id, params=params)
    raise RootError(f"the root {address} changed during each of {_CONSISTENT_READ_TRIES} reads")


def _cell(v: object, what: str) -> Cell | None:
    if v is None:
        return None
    if not isinstance(v, TvmCell | TvmSlice):
        raise BadRootAnswer(f"{what}: expected a cell, got {type(v).__name__}")
    return Cell.one_from_boc(v.boc)


def _hashes(v: object, what: str) -> frozenset[str]:
    c = _cell(v, what)
    if c is None:
        return frozenset()
    keys = HashMap.parse(c.begin_parse(), 256) or {}
    return frozenset(f"{k:064x}" for k in keys)


def _address_key(bits: str) -> str:
    return raw_address(Builder().store_bits(bits).end_cell().begin_parse().load_address())


def _proxies(v: object) -> tuple[RegisteredProxy, ...]:
    c = _cell(v, "proxies")
    if c is None:
        return ()
    entries = HashMap.parse(c.begin_parse(), 267, _address_key) or {}
    out = [parse_proxy_entry(wallet, value.load_ref()) for wallet, value in entries.items()]
    return tuple(sorted(out, key=lambda p: p.wallet))


def _address(r: GetMethodResult, what: str) -> str:
    v = r.stack[0] if r.stack else None
    if not isinstance(v, TvmCell | TvmSlice):
        raise BadRootAnswer(f"{what}: expected an address slice, got {v!r}")
    return raw_address(Cell.one_from_boc(v.boc).begin_parse().load_address())


def _decode_slashing(r: GetMethodResult) -> RootSlashing:
    delay, quorum = r.int_at(0), r.int_at(1)
    keys = frozenset(bytes.fromhex(h) for h in _hashes(r.stack[2], "verifiers"))
    return RootSlashing(dispute_delay=delay, quorum=quorum, verifiers=keys)


async def read_root_slashing(client: TonCenterClient, address: str) -> RootSlashing:
    """The root's verifier keys, dispute delay (as applied: at most the unbonding delay)
    and verdict quorum (``slashing()``)."""
    r = await _get(client, address, "slashing")
    try:
        return _decode_slashing(r)
    # pytoniq raises bare assertion and index errors on cells that are not what we expect.
    except (AssertionError, IndexError, TypeError, ValueError) as e:
        raise BadRootAnswer(f"slashing() at {address} answered {r.stack!r}: {e}") from None


async def read_root_state(client: TonCenterClient, address: str) -> RootState:
    """Everything the root holds: params (with the market), owner, the three hash lists
    and the registered proxies, all at one version."""
    for _ in range(_CONSISTENT_READ_TRIES):
        config, market, lists, owner, slashing = await asyncio.gather(
            *(_get(client, address, m) for m in ("config", "market", "lists", "owner", "slashing"))
        )
        version, network_id, params = _decode_params(config, market)
        try:
            state = RootState(
                version=version,
                network_id=network_id,
                owner=_address(owner, "owner()"),
                params=params,
                proxy_images=_hashes(lists.stack[0], "proxy images"),
                worker_images=_hashes(lists.stack[1], "worker images"),
                models=_hashes(lists.stack[2], "models"),
                proxies=_proxies(lists.stack[3]),
                slashing=_decode_slashing(slashing),
            )
        # pytoniq raises bare assertion and index errors on cells that are not what we expect.
        except (AssertionError, IndexError, TypeError, ValueError) as e:
            raise BadRootAnswer(f"lists()/owner() at {address}: {e}") from None
        if await _consistent(client, address, version):
            return state
    raise RootError(f"the root {address} changed during each of {_CONSISTENT_READ_TRIES} reads")


# -- deploy -----------------------------------------------------------------------------


async def deploy_root(
    client: LocalChainClient,
    owner: Address | str,
    network_id: int,
    params: RootParams,
    amount: int = TON,
) -> str:
    """Deploy the root on the local chain (``/dev/deploy``, from its treasury); the raw
    address. Idempotent: a root already active there is left as it is."""
    code, data, address = root_init(owner, network_id, params)
    raw = raw_address(address)
    if (await client.get_address_information(raw)).active:
        return raw
    r = await client.deploy(code.to_boc(), data.to_boc(), amount)
    if r.get("state") != "active":
        raise ChainError(0, f"root not deployed at {raw}: {r}")
    return raw


async def deploy_root_from_wallet(
    wallet: Wallet,
    network_id: int,
    params: RootParams,
    *,
    amount: int = TON,
    confirm_timeout_s: float = 60.0,
) -> str:
    """Deploy the root owned by ``wallet``, from it (works on TON as on the local chain):
    its state init with ``amount`` nanotons for storage. The raw address; a root already
    active there is left as it is."""
    code, data, address = root_init(wallet.address, network_id, params)
    raw = raw_address(address)
    client = wallet.client
    if (await client.get_address_information(raw)).active:
        return raw
    # Not bounceable: should the deploy fail, the value stays there instead of bouncing.
    msg = InternalMessage(raw, amount, init=(code, data), bounce=False)
    await wallet.send([msg], confirm_timeout_s=confirm_timeout_s)

    async def active() -> bool:
        return (await client.get_address_information(raw)).active

    if not await poll(active, time.monotonic() + confirm_timeout_s):
        raise RootUpdateTimeout(f"the root {raw} was not active {confirm_timeout_s:g} s after")
    return raw


# -- owner updates ----------------------------------------------------------------------


async def send_root_update(
    wallet: Wallet, root: str, body: Cell, *, confirm_timeout_s: float = 60.0
) -> None:
    """Send an owner update (a ``set_*_body``) from ``wallet`` with :data:`ROOT_FEE_UPDATE`,
    and wait (at most ``confirm_timeout_s``) until the root's version has moved.

    Raises :class:`RootNotDeployed` before sending when there is no root,
    :class:`RootUpdateRefused` (its exit code and meaning) when the root refused the
    update, :class:`RootUpdateTimeout` when its outcome was not seen in time. Two
    updates with the same body in flight at once cannot be told apart: give each a
    distinct query id."""
    client = wallet.client
    root = raw_address(root)
    before = await read_root_version(client, root)
    deadline = time.monotonic() + confirm_timeout_s
    tx = await send_and_find(wallet, InternalMessage(root, ROOT_FEE_UPDATE, body=body), deadline)
    if tx is None:
        raise RootUpdateTimeout(
            f"the root {root} has no transaction for the update after {confirm_timeout_s:g} s"
        )
    out = tx_outcome(tx)
    if not out.success:
        raise RootUpdateRefused(root, out.exit_code, phase=out.phase)

    # The transaction bumped the version; wait until get-methods see it too (on TON the
    # transaction index may run ahead of the state that get-methods read).
    async def moved() -> bool:
        return await read_root_version(client, root) > before

    if not await poll(moved, deadline):
        raise RootUpdateTimeout(f"the root {root} accepted the update but its version did not move")
