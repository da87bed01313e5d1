"""The stake contract (``contracts/contracts/stake.tolk``) from Python: one per node.

A worker or proxy locks TON in its own stake account before it serves (DESIGN.md §11).
The account's address is the hash of the contract code and its fixed parameters
(network id, authority = the root contract, owner = the node's wallet, the node's
Ed25519 identity key), so any peer computes a node's stake address
(:func:`stake_address`) and reads it (:func:`read_stake`) without asking anyone.

A mirror of ``contracts/wrappers/Stake.ts`` (formats and exit codes in
``contracts/README.md``), plus the owner's operations, each one internal message from
the node's wallet confirmed by the stake's own transaction
(:mod:`cocoon.chain.transactions`): :func:`deposit_stake` (deploys on first
use), :func:`request_unbond`, :func:`withdraw_stake`, and :func:`ensure_stake` /
:func:`ensure_stakes`, which ``cocoon up`` runs to keep every node it starts staked.
A refusal raises :class:`StakeRefused` with the contract's exit code and its meaning.
Amounts are integer nanotons.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pytoniq_core.boc import Address, Builder, Cell

from .channel import address_of, parse_address, raw_address
from .local import contracts_dir
from .toncenter import ChainError, GetMethodResult, TonCenterClient, TvmCell, TvmSlice
from .transactions import COMPUTE_SKIPPED, body_hash_b64, tx_outcome, wait_for_tx
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


class StakeOp:
    DEPOSIT = 0x73646570
    REQUEST_UNBOND = 0x73756E62
    WITHDRAW = 0x73776472
    SLASH = 0x736C7368
    RELEASE = 0x73726574  # outgoing: the unbonded stake, to the owner
    SLASH_PAYOUT = 0x736C7079  # outgoing: to the slash's beneficiary


class StakeErr:
    """The stake's exit codes (``contracts/README.md``)."""

    MALFORMED = 300
    UNKNOWN_OP = 301
    NOT_OWNER = 302
    NOT_AUTHORITY = 303
    LOW_VALUE = 304
    ZERO_AMOUNT = 305
    OVER_BONDED = 306
    NOTHING_UNBONDING = 307
    TOO_EARLY = 308
    NOTHING_STAKED = 309
    DELAY_TOO_LONG = 310


# contracts/README.md, "Exit codes" (stake).
STAKE_EXIT_MEANINGS: dict[int, str] = {
    StakeErr.MALFORMED: "malformed body",
    StakeErr.UNKNOWN_OP: "unknown op",
    StakeErr.NOT_OWNER: "deposit / unbond / withdraw not from the owner",
    StakeErr.NOT_AUTHORITY: "slash not from the authority",
    StakeErr.LOW_VALUE: "value below the fee allowance",
    StakeErr.ZERO_AMOUNT: "unbond or slash of 0",
    StakeErr.OVER_BONDED: "unbond more than is bonded",
    StakeErr.NOTHING_UNBONDING: "withdraw with nothing unbonding",
    StakeErr.TOO_EARLY: "withdraw before the unbonding delay has passed",
    StakeErr.NOTHING_STAKED: "slash of a stake that holds nothing",
    StakeErr.DELAY_TOO_LONG: "unbond delay above one year",
}

# The value a message must carry beyond any deposit (the contract's allowances): a
# deposit keeps FEE_DEPOSIT on the account for gas and storage, so bonded grows by
# exactly the amount sent on top of it.
FEE_DEPOSIT = 10_000_000
FEE_CONTROL = 10_000_000  # request-unbond, withdraw, slash
MAX_UNBOND_DELAY = 366 * 24 * 3600  # seconds
# What a stake waits before a withdrawal when nobody (no root) says otherwise.
DEFAULT_UNBOND_DELAY = 3_600


class StakeError(Exception):
    """A stake operation did not go through, or the stake could not be read."""


class StakeRefused(StakeError):
    """The stake's transaction failed: ``exit_code`` of its compute phase (the contract's
    code, see ``contracts/README.md``) or, with ``phase == "action"``, the action phase's
    result code; ``meaning`` says what it means."""

    def __init__(self, op: str, address: str, exit_code: int, *, phase: str = "compute") -> None:
        self.op = op
        self.address = address
        self.exit_code = exit_code
        self.phase = phase
        if exit_code == COMPUTE_SKIPPED:
            self.meaning = "no stake contract at that address"
        elif phase == "compute":
            self.meaning = STAKE_EXIT_MEANINGS.get(exit_code, f"TVM exit code {exit_code}")
        else:
            self.meaning = f"{phase} phase failed with result code {exit_code}"
        super().__init__(f"{op} refused by stake {address}: exit code {exit_code} ({self.meaning})")


class StakeNotDeployed(StakeRefused):
    """No stake contract is active at the address (nothing was deposited yet)."""

    def __init__(self, op: str, address: str) -> None:
        super().__init__(op, address, COMPUTE_SKIPPED)


class StakeTimeout(StakeError):
    """The message left the wallet but the stake's transaction was not seen in time."""


class BadStakeAnswer(StakeError):
    """The account at that address answers, but not as a stake contract."""


# -- encodings --------------------------------------------------------------------------


@cache
def _code_boc(path: Path) -> bytes:
    return base64.b64decode(json.loads(path.read_text())["codeBoc64"])


def stake_code(contracts: Path | None = None) -> Cell:
    """The committed compiled code (``contracts/build/stake.json``)."""
    return Cell.one_from_boc(_code_boc((contracts or contracts_dir()) / "build" / "stake.json"))


def stake_data(
    network_id: int, authority: Address | str, owner: Address | str, node_key: bytes
) -> Cell:
    """Init data: bonded, unbonding, unlockAt, unbondDelay, slashed all 0, and the fixed
    parameters in a ref (what the address hashes)."""
    if len(node_key) != 32:
        raise ValueError("node_key must be a 32-byte Ed25519 public key")
    params = (
        Builder()
        .store_int(network_id, 32)
        .store_address(parse_address(authority))
        .store_address(parse_address(owner))
        .store_bytes(node_key)
        .end_cell()
    )
    b = Builder().store_coins(0).store_coins(0).store_uint(0, 32).store_uint(0, 32)
    return b.store_coins(0).store_ref(params).end_cell()


def stake_init(
    network_id: int,
    authority: Address | str,
    owner: Address | str,
    node_key: bytes,
    code: Cell | None = None,
) -> tuple[Cell, Cell, Address]:
    """(code, data, address) of the stake of this node."""
    code = stake_code() if code is None else code
    data = stake_data(network_id, authority, owner, node_key)
    return code, data, address_of(code, data)


def stake_address(network_id: int, authority: str, owner: str, node_key: bytes) -> str:
    """The raw address (``0:<hex>``) of the stake of the node with ``node_key``, owned by
    the wallet ``owner``, slashable by ``authority`` (the root), on ``network_id``."""
    return raw_address(stake_init(network_id, authority, owner, node_key)[2])


def _head(op: int, query_id: int) -> Builder:
    return Builder().store_uint(op, 32).store_uint(query_id, 64)


def deposit_body(unbond_delay: int, query_id: int = 0) -> Cell:
    """Bonds the attached value less :data:`FEE_DEPOSIT`; ``unbond_delay`` raises the
    stored delay (a lower one is ignored)."""
    return _head(StakeOp.DEPOSIT, query_id).store_uint(unbond_delay, 32).end_cell()


def request_unbond_body(amount: int, query_id: int = 0) -> Cell:
    return _head(StakeOp.REQUEST_UNBOND, query_id).store_coins(amount).end_cell()


def withdraw_body(query_id: int = 0) -> Cell:
    return _head(StakeOp.WITHDRAW, query_id).end_cell()


def slash_body(amount: int, beneficiary: Address | str, query_id: int = 0) -> Cell:
    """The authority's slash (the root sends it; here for tests and tools)."""
    b = _head(StakeOp.SLASH, query_id).store_coins(amount)
    return b.store_address(parse_address(beneficiary)).end_cell()


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
    after_lt = (await client.get_address_information(address)).last_transaction_id.lt
    deadline = time.monotonic() + timeout_s
    msg = InternalMessage(address, value, body=body, init=init)
    await wallet.send([msg], confirm_timeout_s=timeout_s)
    tx = await wait_for_tx(client, address, after_lt, wallet.address, body_hash_b64(body), deadline)
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

    if not await _poll(visible, deadline):
        raise StakeTimeout(f"{op}: the stake {address} accepted it, but reads do not show it yet")


async def _poll(done: Callable[[], Awaitable[bool]], deadline: float) -> bool:
    """``done()`` polled with backoff until it holds or ``deadline`` (monotonic) passes."""
    delay = 0.02
    while True:
        if await done():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


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
