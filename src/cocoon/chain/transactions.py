"""Finding the transaction a wallet's message caused on a contract, and its outcome.

A wallet's transfer is confirmed when the wallet's seqno moves; the contract's own
transaction comes later (on TON, in another block). To learn whether the contract
accepted the message, the contract's transactions after the last one seen before
sending are polled (bounded, with backoff) for an inbound message from the wallet with
the body's hash; the outcome is read from the transaction's own BoC, so it works on
TON (toncenter does not report exit codes) as well as on the local chain.

Every contract's operations go through here: the channels' (:mod:`cocoon.chain.ops`),
the stakes' and the root's updates (:func:`send_and_find`, then :func:`tx_outcome`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pytoniq_core.boc import Address, Cell
from pytoniq_core.tlb.transaction import Transaction as TlbTransaction

from .channel import parse_address, raw_address
from .toncenter import TonCenterClient, Transaction
from .wallet import InternalMessage, Wallet

__all__ = [
    "COMPUTE_SKIPPED",
    "TxOutcome",
    "body_hash_b64",
    "failure_meaning",
    "find_tx",
    "poll",
    "send_and_find",
    "tx_outcome",
    "wait_for_tx",
]

T = TypeVar("T")

# exit_code of an outcome whose compute phase did not run: no contract at the address.
COMPUTE_SKIPPED = -1
_PAGE = 16


@dataclass(frozen=True)
class TxOutcome:
    """Whether a transaction succeeded; if not, the code of the phase that failed."""

    success: bool
    exit_code: int
    phase: str  # "compute" or "action"


def tx_outcome(tx: Transaction) -> TxOutcome:
    """Read the compute and action phases from the transaction's BoC."""
    parsed = TlbTransaction.deserialize(Cell.one_from_boc(base64.b64decode(tx.data)).begin_parse())
    d = parsed.description
    compute = getattr(d, "compute_ph", None)
    if compute is None or compute.type_ == "skipped":
        return TxOutcome(False, COMPUTE_SKIPPED, "compute")
    if not compute.success:
        return TxOutcome(False, int(compute.exit_code), "compute")
    action = getattr(d, "action", None)
    if d.aborted or (action is not None and not action.success):
        code = int(action.result_code) if action is not None else 0
        return TxOutcome(False, code, "action")
    return TxOutcome(True, int(compute.exit_code), "compute")


def failure_meaning(
    exit_code: int, phase: str, meanings: Mapping[int, str], not_deployed: str
) -> str:
    """What a failed outcome's code means: the action phase's result code as such,
    ``not_deployed`` where the compute phase was skipped, else the contract's own
    meaning of its exit code (``meanings``, from ``contracts/README.md``)."""
    if phase != "compute":
        return f"{phase} phase failed with result code {exit_code}"
    if exit_code == COMPUTE_SKIPPED:
        return not_deployed
    return meanings.get(exit_code, f"TVM exit code {exit_code}")


def body_hash_b64(body: Cell) -> str:
    """A message body's hash as toncenter reports it (``in_msg.body_hash``)."""
    return base64.b64encode(body.hash).decode()


def _is(source: str, sender: Address) -> bool:
    try:
        return bool(parse_address(source) == sender)
    except Exception:  # an empty or foreign source string is simply not the sender
        return False


async def find_tx(
    client: TonCenterClient, address: str, after_lt: int, sender: Address, body_hash: str
) -> Transaction | None:
    """The transaction of ``address`` after ``after_lt`` whose inbound message came from
    ``sender`` with this body hash (pages through newer transactions, newest first)."""
    lt: int | None = None
    hash_: str | None = None
    while True:
        txs = await client.get_transactions(
            address, _PAGE, lt=lt, hash=hash_, to_lt=after_lt or None
        )
        for t in txs:
            if t.transaction_id.lt <= after_lt:
                return None
            m = t.in_msg
            if m is not None and m.body_hash == body_hash and _is(m.source, sender):
                return t
        if len(txs) < _PAGE:
            return None
        lt, hash_ = txs[-1].transaction_id.lt, txs[-1].transaction_id.hash


async def poll(attempt: Callable[[], Awaitable[T | None]], deadline: float) -> T | None:
    """``attempt()`` again, with backoff, until it answers (anything true) or
    ``deadline`` (``time.monotonic()``) passes; its answer, or None."""
    delay = 0.02
    while True:
        answer = await attempt()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def wait_for_tx(
    client: TonCenterClient,
    address: str,
    after_lt: int,
    sender: Address,
    body_hash: str,
    deadline: float,
) -> Transaction | None:
    """:func:`find_tx`, polled with backoff until ``deadline`` (``time.monotonic()``);
    None if it did not appear by then."""
    return await poll(lambda: find_tx(client, address, after_lt, sender, body_hash), deadline)


async def send_and_find(
    wallet: Wallet, msg: InternalMessage, deadline: float
) -> Transaction | None:
    """Send ``msg`` from ``wallet`` and wait, until ``deadline`` (``time.monotonic()``),
    for the transaction it causes at its destination; None if none was seen by then.
    Its body must be unique (a fresh query id): the transaction is found by its hash."""
    if msg.body is None:
        raise ValueError("a message without a body cannot be told from others")
    client = wallet.client
    address = raw_address(msg.dest)
    after_lt = (await client.get_address_information(address)).last_transaction_id.lt
    await wallet.send([msg], confirm_timeout_s=max(deadline - time.monotonic(), 0.0))
    body_hash = body_hash_b64(msg.body)
    return await wait_for_tx(client, address, after_lt, wallet.address, body_hash, deadline)
