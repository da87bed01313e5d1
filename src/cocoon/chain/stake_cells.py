"""The stake contract's cells (``contracts/contracts/stake.tolk``): op codes, exit
codes, fee allowances, init data and address, message bodies.

A mirror of ``contracts/wrappers/Stake.ts`` (formats and exit codes in
``contracts/README.md``), slashing's messages included (equivocation proofs, the
root's proposals and cancellations, executions). The address is the hash of the code
and the init data, whose fixed part names one node (network id, authority = the root
contract, owner = the node's wallet, the node's Ed25519 identity key): any peer
computes it (:func:`stake_address`). Amounts are integer nanotons.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path

from pytoniq_core.boc import Address, Builder, Cell

from ..crypto.receipt_cell import RECEIPT_CELL_BITS
from ..crypto.receipts import EquivocationProof
from .channel import address_of, parse_address, raw_address
from .local import contracts_dir

__all__ = [
    "DEFAULT_UNBOND_DELAY",
    "EQUIVOCATION_BP",
    "FEE_CONTROL",
    "FEE_DEPOSIT",
    "FEE_PROOF",
    "MAX_UNBOND_DELAY",
    "REWARD_BP",
    "STAKE_EXIT_MEANINGS",
    "StakeErr",
    "StakeOp",
    "deposit_body",
    "execute_slash_body",
    "propose_slash_body",
    "receipt_cell",
    "request_unbond_body",
    "slash_body",
    "slash_equivocation_body",
    "stake_address",
    "stake_cancel_slash_body",
    "stake_code",
    "stake_data",
    "stake_init",
    "withdraw_body",
]


class StakeOp:
    DEPOSIT = 0x73646570
    REQUEST_UNBOND = 0x73756E62
    WITHDRAW = 0x73776472
    SLASH = 0x736C7368
    RELEASE = 0x73726574  # outgoing: the unbonded stake, to the owner
    SLASH_PAYOUT = 0x736C7079  # outgoing: to the slash's beneficiary
    SLASH_EQUIVOCATION = 0x73657176  # anyone: two receipt cells signed for one slot
    PROPOSE_SLASH = 0x73707270  # the authority: a verdict's slash, pending
    CANCEL_SLASH = 0x7363616E  # the authority: a dispute upheld
    EXECUTE_SLASH = 0x73657865  # anyone, after the dispute window
    SLASH_REWARD = 0x73727764  # outgoing: the prover's / submitter's share


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
    NOT_RECEIPT = 311
    BAD_SIGNATURE = 312
    NOT_SAME_SLOT = 313
    SAME_BODY = 314
    ALREADY_PROVEN = 315
    WRONG_NODE = 316
    BAD_BP = 317
    STALE_NONCE = 318
    SLASH_PENDING = 319
    NO_PENDING = 320
    IN_DISPUTE = 321


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
    StakeErr.NOT_RECEIPT: "a proof's cell is not a receipt cell",
    StakeErr.BAD_SIGNATURE: "a receipt cell not signed by this stake's node key",
    StakeErr.NOT_SAME_SLOT: "the receipts differ in network, request or seq",
    StakeErr.SAME_BODY: "the receipts have the same body: no equivocation",
    StakeErr.ALREADY_PROVEN: "this request and seq were already slashed for",
    StakeErr.WRONG_NODE: "slash proposal for another node key",
    StakeErr.BAD_BP: "slash proposal of 0 or above 10000 basis points",
    StakeErr.STALE_NONCE: "verdict nonce not above the last accepted",
    StakeErr.SLASH_PENDING: "a slash is pending",
    StakeErr.NO_PENDING: "no pending slash (with that nonce)",
    StakeErr.IN_DISPUTE: "the dispute window has not passed",
}

# The value a message must carry beyond any deposit (the contract's allowances): a
# deposit keeps FEE_DEPOSIT on the account for gas and storage, so bonded grows by
# exactly the amount sent on top of it.
FEE_DEPOSIT = 10_000_000
FEE_CONTROL = 10_000_000  # request-unbond, withdraw, slash, propose, cancel, execute
FEE_PROOF = 50_000_000  # an equivocation proof (two signature checks)
# The contract's constants: an equivocation slashes this share of bonded + unbonding
# (rounded up), and the prover / verdict submitter gets REWARD_BP of any slash.
EQUIVOCATION_BP = 5_000
REWARD_BP = 2_000
MAX_UNBOND_DELAY = 366 * 24 * 3600  # seconds
# What a stake waits before a withdrawal when nobody (no root) says otherwise.
DEFAULT_UNBOND_DELAY = 3_600


@cache
def _code_boc(path: Path) -> bytes:
    return base64.b64decode(json.loads(path.read_text())["codeBoc64"])


def stake_code(contracts: Path | None = None) -> Cell:
    """The committed compiled code (``contracts/build/stake.json``)."""
    return Cell.one_from_boc(_code_boc((contracts or contracts_dir()) / "build" / "stake.json"))


def stake_data(
    network_id: int, authority: Address | str, owner: Address | str, node_key: bytes
) -> Cell:
    """Init data: bonded, unbonding, unlockAt, unbondDelay, slashed, verdictNonce all 0,
    no proven slots, no pending slash, and the fixed parameters in a ref (what the
    address hashes)."""
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
    # slashed, verdictNonce, proven (empty map), pending (none)
    b = b.store_coins(0).store_uint(0, 64).store_bit(0).store_bit(0)
    return b.store_ref(params).end_cell()


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


def receipt_cell(data: bytes) -> Cell:
    """The receipt cell (:mod:`cocoon.crypto.receipt_cell`) with these 108 data bytes."""
    if len(data) * 8 != RECEIPT_CELL_BITS:
        raise ValueError(f"a receipt cell holds {RECEIPT_CELL_BITS // 8} bytes, not {len(data)}")
    return Builder().store_bytes(data).end_cell()


def _signed_receipt_cell(data: bytes, signature: bytes) -> Cell:
    if len(signature) != 64:
        raise ValueError(f"a receipt cell signature is 64 bytes, not {len(signature)}")
    return Builder().store_bytes(signature).store_ref(receipt_cell(data)).end_cell()


def slash_equivocation_body(proof: EquivocationProof, query_id: int = 0) -> Cell:
    """Anyone's ``SlashEquivocation``: ``^[signature:bits512 ^receiptA] ^[… ^receiptB]``."""
    a = _signed_receipt_cell(proof.data_a, proof.signature_a)
    b = _signed_receipt_cell(proof.data_b, proof.signature_b)
    return _head(StakeOp.SLASH_EQUIVOCATION, query_id).store_ref(a).store_ref(b).end_cell()


def propose_slash_body(
    bp: int,
    node_key: bytes,
    nonce: int,
    execute_at: int,
    evidence: bytes,
    beneficiary: Address | str,
    query_id: int = 0,
) -> Cell:
    """The authority's ``ProposeSlash`` (the root sends it; here for tests and tools)."""
    b = _head(StakeOp.PROPOSE_SLASH, query_id).store_uint(bp, 16).store_bytes(node_key)
    b = b.store_uint(nonce, 64).store_uint(execute_at, 32).store_bytes(evidence)
    return b.store_address(parse_address(beneficiary)).end_cell()


def stake_cancel_slash_body(nonce: int, query_id: int = 0) -> Cell:
    """The authority's ``CancelSlash`` (the root sends it on its owner's CancelSlash)."""
    return _head(StakeOp.CANCEL_SLASH, query_id).store_uint(nonce, 64).end_cell()


def execute_slash_body(query_id: int = 0) -> Cell:
    """Anyone's ``ExecuteSlash``, once the pending slash's dispute window has passed."""
    return _head(StakeOp.EXECUTE_SLASH, query_id).end_cell()
