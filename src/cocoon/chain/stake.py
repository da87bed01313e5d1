"""The stake contract (``contracts/contracts/stake.tolk``) from Python: one per node.

A worker or proxy locks TON in its own stake account before it serves (DESIGN.md §11).
The account's address is the hash of the contract code and its fixed parameters
(network id, authority = the root contract, owner = the node's wallet, the node's
Ed25519 identity key), so any peer computes a node's stake address
(:func:`stake_address`) and reads it (:func:`read_stake`) without asking anyone.

The cells (op codes, exit codes, init data, bodies) are in :mod:`.stake_cells`,
re-exported here. This module reads a stake and performs the owner's operations, each
one internal message from the node's wallet confirmed by the stake's own transaction
(:mod:`cocoon.chain.transactions`): :func:`deposit_stake` (deploys on first use),
:func:`request_unbond`, :func:`withdraw_stake`, and :func:`ensure_stake` /
:func:`ensure_stakes`, which ``cocoon up`` runs to keep every node it starts staked.
A refusal raises :class:`StakeRefused` with the contract's exit code and its meaning.
Amounts are integer nanotons.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pytoniq_core.boc import Address, Cell

from .channel import raw_address
from .stake_cells import (
    DEFAULT_UNBOND_DELAY,
    FEE_CONTROL,
    FEE_DEPOSIT,
    MAX_UNBOND_DELAY,
    STAKE_EXIT_MEANINGS,
    StakeErr,
    StakeOp,
    deposit_body,
    request_unbond_body,
    slash_body,
    stake_address,
    stake_code,
    stake_data,
    stake_init,
    withdraw_body,
)
from .toncenter import ChainError, GetMethodResult, TonCenterClient, TvmCell, TvmSlice
from .transactions import COMPUTE_SKIPPED, failure_meaning, poll, send_and_find, tx_outcome
from .wallet import InternalMessage, Wallet

__all__ = [
    "DEFAULT_UNBOND_DELAY",
    "FEE_CONTROL",
    "FEE_DEPOSIT",
    "MAX_UNBOND_DELAY",
    "STAKE_EXIT_MEANINGS",
    "BadStakeAnswer",
    "StakeErr",
    "StakeError",
    "StakeNotDeployed",
    "StakeOp",
    "StakeParams",
    "StakeRefused",
    "StakeState",
    "StakeTimeout",
    "deposit_body",
    "deposit_stake",
    "ensure_stake",
    "ensure_stakes",
    "read_stake",
    "read_stake_params",
    "request_unbond",
    "request_unbond_body",
    "slash_body",
    "stake_address",
    "stake_code",
    "stake_data",
    "stake_init",
    "withdraw_body",
    "withdraw_stake",
]


class StakeError(Exception):
    """A stake operation did not go through, or the stake could not be read."""


class StakeRefused(StakeError):
    """The stake's transaction failed: ``exit_code`` of its compute phase (the contract's
    code, see ``contracts/README.md``) or, with ``phase == "action"``, the action phase's
    result code; ``meaning`` says what it means."""

    def __init__(self, op: str, address: str, exit_code: int, *, phase: str = "compute") -> None:
        self.op, self.address, self.exit_code, self.phase = op, address, exit_code, phase
        not_deployed = "no stake contract at that address"
        self.meaning = failure_meaning(exit_code, phase, STAKE_EXIT_MEANINGS, not_deployed)
        super().__init__(f"{op} refused by stake {address}: exit code {exit_code} ({self.meaning})")


class StakeNotDeployed(StakeRefused):
    """No stake contract is active at the address (nothing was deposited yet)."""

    def __init__(self, op: str, address: str) -> None:
        super().__init__(op, address, COMPUTE_SKIPPED)


class StakeTimeout(StakeError):
    """The message left the wallet but the stake's transaction was not seen in time."""


class BadStakeAnswer(StakeError):
    """The account at that address answers, but not as a stake contract."""


# -- reads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StakeState:
    """What ``stake()`` answers, and whether a stake contract is there at all (an account
    that is not deployed reads as all zeros with ``active=False``)."""

    bonded_nano: int  # at stake: slashable, not withdrawable
    unbonding_nano: int  # still slashable; withdrawable from unlock_at
    unlock_at: int  # unix time; 0 before the first unbond request
    unbond_delay: int  # seconds from an unbond request to its withdrawal
    slashed_nano: int  # total ever slashed
    balance_nano: int  # the account's balance: the stake plus its fee buffer
    active: bool


NOT_DEPLOYED = StakeState(0, 0, 0, 0, 0, 0, active=False)


@dataclass(frozen=True)
class StakeParams:
    """What ``params()`` answers: the fixed parameters the address is derived from."""

    network_id: int
    authority: str  # raw address
    owner: str  # raw address
    node_key: bytes


async def _get(client: TonCenterClient, address: str, method: str) -> GetMethodResult | None:
    """``method``'s answer, or None when no contract is active at ``address``."""
    try:
        r = await client.run_get_method(address, method)
    except ChainError:
        # toncenter refuses get-methods on accounts without code; the local chain answers -13.
        if not (await client.get_address_information(address)).active:
            return None
        raise
    if r.exit_code != 0:
        if not (await client.get_address_information(address)).active:
            return None
        raise BadStakeAnswer(f"{method}() at {address} exited with code {r.exit_code}")
    return r


async def read_stake(client: TonCenterClient, address: str) -> StakeState:
    """The stake at ``address`` (zeros and ``active=False`` where none is deployed).
    Raises :class:`BadStakeAnswer` when the contract there is not a stake."""
    r = await _get(client, address, "stake")
    if r is None:
        return NOT_DEPLOYED
    try:
        bonded, unbonding, unlock_at, delay, slashed, balance = (r.int_at(i) for i in range(6))
    except (IndexError, TypeError) as e:
        raise BadStakeAnswer(f"stake() at {address} answered {r.stack!r}: {e}") from None
    return StakeState(bonded, unbonding, unlock_at, delay, slashed, balance, active=True)


async def read_stake_params(client: TonCenterClient, address: str) -> StakeParams | None:
    """The stake's fixed parameters, or None where none is deployed."""
    r = await _get(client, address, "params")
    if r is None:
        return None
    try:
        return StakeParams(
            network_id=r.int_at(0),
            authority=raw_address(_stack_address(r.stack[1])),
            owner=raw_address(_stack_address(r.stack[2])),
            node_key=r.int_at(3).to_bytes(32, "big"),
        )
    except (IndexError, TypeError, ValueError) as e:
        raise BadStakeAnswer(f"params() at {address} answered {r.stack!r}: {e}") from None


def _stack_address(v: object) -> Address:
    if not isinstance(v, TvmCell | TvmSlice):
        raise TypeError(f"expected an address slice, got {type(v).__name__}")
    return Cell.one_from_boc(v.boc).begin_parse().load_address()


# -- the owner's operations -------------------------------------------------------------


def _query_id() -> int:
    """A random query id: makes every body's hash unique, so its transaction can be found."""
    return secrets.randbits(64)


async def _transact(
    wallet: Wallet,
    op: str,
    address: str,
    value: int,
    body: Cell,
    init: tuple[Cell, Cell] | None,
    timeout_s: float,
) -> None:
    """Send one message to the stake and wait (bounded) for its transaction there, then
    until the account state that reads are served from includes it."""
    client = wallet.client
    deadline = time.monotonic() + timeout_s
    msg = InternalMessage(address, value, body=body, init=init)
    tx = await send_and_find(wallet, msg, deadline)
    if tx is None:
        raise StakeTimeout(
            f"{op}: the stake {address} has no transaction for our message after {timeout_s:g} s"
        )
    out = tx_outcome(tx)
    if not out.success:
        if out.exit_code == COMPUTE_SKIPPED:
            raise StakeNotDeployed(op, address)
        raise StakeRefused(op, address, out.exit_code, phase=out.phase)

    # On TON the transaction index may run ahead of the state that get-methods read.
    async def visible() -> bool:
        info = await client.get_address_information(address)
        return bool(info.last_transaction_id.lt >= tx.transaction_id.lt)

    if not await poll(visible, deadline):
        raise StakeTimeout(f"{op}: the stake {address} accepted it, but reads do not show it yet")


def _check_delay(unbond_delay: int) -> None:
    if not 0 <= unbond_delay <= MAX_UNBOND_DELAY:
        raise ValueError(f"unbond delay must be 0..{MAX_UNBOND_DELAY} s, not {unbond_delay}")


async def deposit_stake(
    wallet: Wallet,
    *,
    network_id: int,
    authority: str,
    node_key: bytes,
    amount_nano: int,
    unbond_delay: int,
    timeout_s: float = 60.0,
) -> str:
    """Bond ``amount_nano`` more in the stake of ``node_key`` owned by ``wallet``
    (the wallet sends it plus :data:`FEE_DEPOSIT`); the first deposit deploys the
    stake. ``unbond_delay`` raises the stored delay, never lowers it. Returns once the
    stake's transaction is on chain (at most ``timeout_s``); the stake's raw address."""
    if amount_nano < 0:
        raise ValueError(f"deposit of {amount_nano} nanotons")
    _check_delay(unbond_delay)
    code, data, addr = stake_init(network_id, authority, wallet.address, node_key)
    address = raw_address(addr)
    # The state init only where there is no contract yet: it costs forwarding fees.
    active = (await wallet.client.get_address_information(address)).active
    body = deposit_body(unbond_delay, _query_id())
    init = None if active else (code, data)
    await _transact(wallet, "deposit", address, amount_nano + FEE_DEPOSIT, body, init, timeout_s)
    return address


async def request_unbond(
    wallet: Wallet, address: str, amount_nano: int, *, timeout_s: float = 60.0
) -> None:
    """Move ``amount_nano`` from bonded to unbonding (owner); withdrawable once the
    unbonding delay has passed, counted from this request (for all that is unbonding)."""
    await _require_deployed(wallet.client, "unbond", address)
    body = request_unbond_body(amount_nano, _query_id())
    await _transact(wallet, "unbond", address, FEE_CONTROL, body, None, timeout_s)


async def withdraw_stake(wallet: Wallet, address: str, *, timeout_s: float = 60.0) -> None:
    """Send what is unbonding back to the owner's wallet, once its unlock time has come."""
    await _require_deployed(wallet.client, "withdraw", address)
    await _transact(
        wallet, "withdraw", address, FEE_CONTROL, withdraw_body(_query_id()), None, timeout_s
    )


async def _require_deployed(client: TonCenterClient, op: str, address: str) -> None:
    # Without a contract the message would only bounce back, less fees.
    if not (await client.get_address_information(address)).active:
        raise StakeNotDeployed(op, address)


async def ensure_stake(
    wallet: Wallet,
    *,
    network_id: int,
    authority: str,
    node_key: bytes,
    minimum_nano: int,
    unbond_delay: int,
    timeout_s: float = 60.0,
) -> str:
    """Make the stake of ``node_key`` hold at least ``minimum_nano`` bonded with at
    least ``unbond_delay``: deposit the difference (deploying it if needed), or nothing
    when it already does, so that a re-run costs no transaction. The stake's address."""
    _check_delay(unbond_delay)
    address = stake_address(network_id, authority, wallet.address, node_key)
    st = await read_stake(wallet.client, address)
    short = minimum_nano - st.bonded_nano
    if st.active and short <= 0 and st.unbond_delay >= unbond_delay:
        return address
    return await deposit_stake(
        wallet,
        network_id=network_id,
        authority=authority,
        node_key=node_key,
        amount_nano=max(short, 0),
        unbond_delay=unbond_delay,
        timeout_s=timeout_s,
    )


async def ensure_stakes(
    nodes: Sequence[tuple[Wallet, bytes]],
    *,
    network_id: int,
    authority: str,
    minimum_nano: int,
    unbond_delay: int,
    timeout_s: float = 60.0,
) -> list[str]:
    """:func:`ensure_stake` for each (wallet, node key), concurrently (sends from one
    wallet are serialised by the wallet); the stake addresses, in order."""
    return list(
        await asyncio.gather(
            *(
                ensure_stake(
                    wallet,
                    network_id=network_id,
                    authority=authority,
                    node_key=key,
                    minimum_nano=minimum_nano,
                    unbond_delay=unbond_delay,
                    timeout_s=timeout_s,
                )
                for wallet, key in nodes
            )
        )
    )
