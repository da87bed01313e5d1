"""Slashing from Python: equivocation proofs, verdicts, disputes (DESIGN.md §11).

Two ways to slash a worker's stake, each only on what can be proven
(``contracts/README.md``, "Slashing"; ``docs/verified-work.md``):

- **Equivocation**: anyone holding two receipts that one worker signed for the same
  request and seq with different bodies sends them to its stake
  (:func:`submit_equivocation`); the stake checks both signatures itself and slashes
  at once, paying the sender a share.
- **Verdict**: verifiers listed on the root each sign a verdict
  (:func:`cocoon.crypto.verdict_cell.sign_verdict`); anyone submits a quorum of them
  to the root (:func:`submit_verdicts`), which proposes the slash to the stake. It
  stays pending for the root's dispute delay, during which the root's owner may
  cancel it (:func:`cancel_slash`); after it anyone executes it (:func:`execute_slash`).

The root's owner lists verifiers (:func:`set_verifier`) and sets the dispute delay and
quorum (:func:`set_slashing`). Amounts are integer nanotons.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pytoniq_core.boc import Address, Builder, Cell

from ..crypto.receipt_cell import network_hash, request_key
from ..crypto.receipts import equivocation_proof
from ..crypto.verdict_cell import Verdict, VerdictError, decode_signed_verdict, verdict_cell_hash
from .channel import parse_address, raw_address
from .root import (
    RootError,
    RootUpdateRefused,
    RootUpdateTimeout,
    read_root_slashing,
    read_root_version,
    send_root_update,
)
from .root_cells import ROOT_FEE_FORWARD
from .root_messages import (
    cancel_slash_body,
    set_slashing_body,
    set_verifier_body,
    submit_verdict_body,
)
from .stake import (
    StakeError,
    StakeNotDeployed,
    StakeRefused,
    StakeTimeout,
    _transact,
    read_stake,
    read_stake_params,
)
from .stake_cells import (
    FEE_CONTROL,
    FEE_PROOF,
    REWARD_BP,
    execute_slash_body,
    slash_equivocation_body,
)
from .toncenter import GetMethodResult, TonCenterClient, Transaction, TvmCell, TvmSlice
from .transactions import send_and_find, tx_outcome, wait_for_tx
from .wallet import InternalMessage, Wallet

__all__ = [
    "PendingSlash",
    "SlashError",
    "SlashResult",
    "StakeSlashing",
    "cancel_slash",
    "execute_slash",
    "is_proven",
    "read_root_slashing",
    "read_stake_slashing",
    "set_slashing",
    "set_verifier",
    "submit_equivocation",
    "submit_verdicts",
]


class SlashError(StakeError):
    """A slash cannot be asked for as given (evidence for another stake, verdicts that
    disagree); nothing was sent."""


@dataclass(frozen=True)
class PendingSlash:
    """A slash the root proposed on a quorum of verdicts, waiting out the dispute window."""

    bp: int  # basis points of bonded + unbonding, taken at execution
    execute_at: int  # unix time from which anyone may execute it
    nonce: int  # the verdict's
    evidence: bytes  # 32-byte hash of what the verifiers judged
    beneficiary: str  # raw address: who submitted the verdicts, rewarded at execution


@dataclass(frozen=True)
class StakeSlashing:
    """A stake's slashing state: the pending slash, if any, and the highest verdict nonce
    it accepted (a new verdict about it needs a higher one)."""

    pending: PendingSlash | None
    verdict_nonce: int


@dataclass(frozen=True)
class SlashResult:
    """A slash that took effect: what the stake lost and the share paid to the prover
    (equivocation) or to the verdicts' submitter (execution)."""

    stake: str  # raw address
    slashed_nano: int
    reward_nano: int


# -- reads ------------------------------------------------------------------------------


async def _get(client: TonCenterClient, address: str, method: str) -> GetMethodResult:
    r = await client.run_get_method(address, method)
    if r.exit_code != 0:
        if not (await client.get_address_information(address)).active:
            raise StakeNotDeployed(method, address)
        raise StakeError(f"{method}() at {address} exited with code {r.exit_code}")
    return r


def _address(v: object) -> str:
    if not isinstance(v, TvmCell | TvmSlice):
        raise TypeError(f"expected an address slice, got {type(v).__name__}")
    return raw_address(Cell.one_from_boc(v.boc).begin_parse().load_address())


async def read_stake_slashing(client: TonCenterClient, address: str) -> StakeSlashing:
    """The stake's pending slash and last verdict nonce (``pendingSlash()``)."""
    r = await _get(client, address, "pendingSlash")
    try:
        bp, execute_at, nonce, evidence = (r.int_at(i) for i in range(4))
        verdict_nonce = r.int_at(5)
        pending = None
        if bp:
            pending = PendingSlash(
                bp, execute_at, nonce, evidence.to_bytes(32, "big"), _address(r.stack[4])
            )
    except (IndexError, TypeError, ValueError, OverflowError) as e:
        raise StakeError(f"pendingSlash() at {address} answered {r.stack!r}: {e}") from None
    return StakeSlashing(pending, verdict_nonce)


async def is_proven(
    client: TonCenterClient, address: str, network: str, request_id: str, seq: int
) -> bool:
    """Whether the stake was already slashed for equivocating on this request and seq."""
    args = [
        int.from_bytes(network_hash(network), "big"),
        int.from_bytes(request_key(request_id), "big"),
        seq,
    ]
    r = await client.run_get_method(address, "isProven", args)
    if r.exit_code != 0:
        raise StakeError(f"isProven() at {address} exited with code {r.exit_code}")
    return bool(r.int_at(0))


# -- equivocation -----------------------------------------------------------------------


def _query_id() -> int:
    return secrets.randbits(64)


async def _slashed(client: TonCenterClient, address: str) -> int:
    return (await read_stake(client, address)).slashed_nano


async def submit_equivocation(
    wallet: Wallet,
    stake_address: str,
    receipt_a: bytes,
    receipt_b: bytes,
    *,
    timeout_s: float = 60.0,
) -> SlashResult:
    """Prove to the stake at ``stake_address`` that its worker signed two different
    receipts (SignedReceipt msgpack, as clients and proxies hold them) for the same
    request and seq; the stake slashes half of what it holds and pays ``wallet`` a
    fifth of that. Sends :data:`FEE_PROOF` (what is left of it comes back with the
    reward).

    Raises :class:`~cocoon.crypto.errors.ReceiptError` when the receipts prove nothing
    (checked here first), :class:`SlashError` when they are signed by another key than
    the stake's, :class:`StakeRefused` with the contract's exit code (e.g. 315: this
    request and seq were already slashed for), :class:`StakeTimeout`."""
    client = wallet.client
    address = raw_address(stake_address)
    proof = equivocation_proof(receipt_a, receipt_b)
    params = await read_stake_params(client, address)
    if params is None:
        raise StakeNotDeployed("slash-equivocation", address)
    if params.node_key != proof.worker_key:
        raise SlashError(
            f"the receipts are signed by {proof.worker_key.hex()}, the stake {address}"
            f" holds the stake of {params.node_key.hex()}"
        )
    before = await _slashed(client, address)
    body = slash_equivocation_body(proof, _query_id())
    await _transact(wallet, "slash-equivocation", address, FEE_PROOF, body, None, timeout_s)
    taken = await _slashed(client, address) - before
    return SlashResult(address, taken, taken * REWARD_BP // 10_000)


# -- verdicts ---------------------------------------------------------------------------


def _verdict_cell(v: Verdict) -> Cell:
    cell = (
        Builder()
        .store_uint(0x76726474, 32)
        .store_int(v.network_id, 32)
        .store_address(Address(v.stake))
        .store_bytes(v.worker_key)
        .store_bytes(v.evidence_hash)
        .store_uint(v.slash_bp, 16)
        .store_uint(v.nonce, 64)
        .end_cell()
    )
    if cell.hash != verdict_cell_hash(v):  # the cell sent must be the one signed
        raise VerdictError("verdict cell does not hash as signed")
    return cell


def _one_verdict(signed_verdicts: Sequence[bytes]) -> tuple[Verdict, list[tuple[bytes, bytes]]]:
    if not signed_verdicts:
        raise VerdictError("no signed verdicts")
    decoded = [decode_signed_verdict(d) for d in signed_verdicts]
    verdict = decoded[0].verdict
    sigs: dict[bytes, bytes] = {}
    for sv in decoded:
        if sv.verdict != verdict:
            raise VerdictError("the signed verdicts are not all of the same verdict")
        sigs.setdefault(sv.verifier_key, sv.signature)
    return verdict, list(sigs.items())


async def _forwarded(
    wallet: Wallet, root: str, stake: str, body: Cell, op: str, deadline: float
) -> Transaction:
    """Send ``body`` to the root, which forwards one message to ``stake``: the stake's
    transaction for it (root refusals raise RootUpdateRefused, stake refusals
    StakeRefused)."""
    client = wallet.client
    stake_lt = (await client.get_address_information(stake)).last_transaction_id.lt
    tx = await send_and_find(wallet, InternalMessage(root, ROOT_FEE_FORWARD, body=body), deadline)
    if tx is None:
        raise RootUpdateTimeout(f"{op}: the root {root} has no transaction for it in time")
    out = tx_outcome(tx)
    if not out.success:
        raise RootUpdateRefused(root, out.exit_code, phase=out.phase)
    forwarded = [m for m in tx.out_msgs if m.destination and raw_address(m.destination) == stake]
    if not forwarded:
        raise RootError(f"{op}: the root {root} accepted it but sent nothing to {stake}")
    stake_tx = await wait_for_tx(
        client, stake, stake_lt, parse_address(root), forwarded[0].body_hash, deadline
    )
    if stake_tx is None:
        raise StakeTimeout(f"{op}: the stake {stake} has no transaction for the root's message")
    out = tx_outcome(stake_tx)
    if not out.success:
        raise StakeRefused(op, stake, out.exit_code, phase=out.phase)
    return stake_tx


async def submit_verdicts(
    wallet: Wallet, root: str, signed_verdicts: Sequence[bytes], *, timeout_s: float = 60.0
) -> PendingSlash:
    """Submit verifiers' signatures of one verdict (msgpack SignedVerdicts from
    :func:`~cocoon.crypto.verdict_cell.sign_verdict`) to the root; the root checks a
    quorum of distinct listed verifiers and proposes the slash to the stake, where it
    waits out the dispute delay. ``wallet`` is the beneficiary of the reward. Returns
    the pending slash.

    Raises :class:`~cocoon.crypto.verdict_cell.VerdictError` for verdicts that do not
    verify or disagree, :class:`RootUpdateRefused` (e.g. 109: a signer is not listed,
    112: no quorum), :class:`StakeRefused` (e.g. 318: the nonce was used, 319: a slash
    is pending already), or a timeout."""
    verdict, sigs = _one_verdict(signed_verdicts)
    root = raw_address(root)
    stake = raw_address(verdict.stake)
    body = submit_verdict_body(_verdict_cell(verdict), sigs, _query_id())
    deadline = time.monotonic() + timeout_s
    await _forwarded(wallet, root, stake, body, "submit-verdicts", deadline)
    state = await read_stake_slashing(wallet.client, stake)
    if state.pending is None or state.pending.nonce != verdict.nonce:
        raise StakeError(f"the stake {stake} took the verdict but shows no pending slash for it")
    return state.pending


async def cancel_slash(
    wallet: Wallet, root: str, stake_address: str, nonce: int, *, timeout_s: float = 60.0
) -> None:
    """The root's owner upholds a dispute: cancel the slash pending on the stake for the
    verdict with ``nonce`` (through the root; the stake obeys only its authority)."""
    stake = raw_address(stake_address)
    body = cancel_slash_body(stake, nonce, _query_id())
    await _forwarded(
        wallet, raw_address(root), stake, body, "cancel-slash", time.monotonic() + timeout_s
    )


async def execute_slash(
    wallet: Wallet, stake_address: str, *, timeout_s: float = 60.0
) -> SlashResult:
    """Execute the stake's pending slash once its dispute window has passed (anyone may;
    the reward goes to the verdicts' submitter). Raises :class:`StakeRefused` with 320
    (nothing pending) or 321 (still in dispute)."""
    client = wallet.client
    address = raw_address(stake_address)
    before = await _slashed(client, address)
    body = execute_slash_body(_query_id())
    await _transact(wallet, "execute-slash", address, FEE_CONTROL, body, None, timeout_s)
    taken = await _slashed(client, address) - before
    return SlashResult(address, taken, taken * REWARD_BP // 10_000)


# -- the root owner's terms -------------------------------------------------------------


async def set_verifier(
    wallet: Wallet, root: str, key: bytes, allowed: bool, *, confirm_timeout_s: float = 60.0
) -> int:
    """List (``allowed``) or unlist a verifier's node key on the root; the new version."""
    body = set_verifier_body(key, allowed, _query_id())
    await send_root_update(wallet, root, body, confirm_timeout_s=confirm_timeout_s)
    return await read_root_version(wallet.client, raw_address(root))


async def set_slashing(
    wallet: Wallet, root: str, dispute_delay: int, quorum: int, *, confirm_timeout_s: float = 60.0
) -> int:
    """Set the root's dispute delay (at most its unbonding delay) and verdict quorum; the
    new version."""
    body = set_slashing_body(dispute_delay, quorum, _query_id())
    await send_root_update(wallet, root, body, confirm_timeout_s=confirm_timeout_s)
    return await read_root_version(wallet.client, raw_address(root))
