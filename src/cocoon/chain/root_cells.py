"""The root contract's cells (``contracts/contracts/root.tolk``), offline.

A mirror of ``contracts/wrappers/Root.ts`` (formats in ``contracts/README.md``): the
params, market and slashing cells, init data, the owner's update bodies, the proxy
entry cell, the verdict submission and slash cancellation bodies, and the exit codes
with their meanings. Talking to a deployed root is
:mod:`cocoon.chain.root`, which re-exports all of this.

The contract keeps multipliers, the commission and the trust-tier multipliers in basis
points (1/10000); :meth:`RootParams.prices` turns the class multipliers into
:class:`~cocoon.pricing.Prices` (thousandths), exactly or not at all. Amounts are
integer nanotons.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from pytoniq_core.boc import Address, Builder, Cell
from pytoniq_core.boc.hashmap import HashMap

from ..pricing import Prices
from .channel import address_of, parse_address
from .local import contracts_dir

__all__ = [
    "ROOT_EXIT_MEANINGS",
    "ROOT_FEE_UPDATE",
    "TRUST_TIERS",
    "HashKind",
    "RegisteredProxy",
    "RootErr",
    "RootOp",
    "RootParams",
    "RootSlashing",
    "market_cell",
    "params_cell",
    "parse_proxy_entry",
    "proxy_entry_cell",
    "root_code",
    "root_data",
    "root_exit_meaning",
    "root_init",
    "slashing_cell",
]

TON = 1_000_000_000
BPS = 10_000
ROOT_FEE_UPDATE = 10_000_000  # the value an owner update must carry at least
# What a verdict submission or a slash cancellation must carry: the root forwards what is
# left after its own gas to the stake.
ROOT_FEE_FORWARD = 50_000_000


class RootOp:
    SET_PARAMS = 0x73707273
    SET_HASH = 0x73687368
    SET_PROXY = 0x73707278
    SET_OWNER = 0x736F776E
    SET_VERIFIER = 0x73766572
    SET_SLASHING = 0x73736C73
    SUBMIT_VERDICT = 0x73766474
    CANCEL_SLASH = 0x73636E6C


class RootErr:
    """The root's exit codes (``contracts/README.md``)."""

    MALFORMED = 100
    UNKNOWN_OP = 101
    NOT_OWNER = 102
    LOW_VALUE = 103
    BAD_KIND = 104
    BAD_PARAMS = 105
    BAD_PROXY = 106
    NOT_VERDICT = 107
    WRONG_NETWORK = 108
    NOT_VERIFIER = 109
    BAD_VERDICT_SIG = 110
    SAME_VERIFIER = 111
    NO_QUORUM = 112
    BAD_SLASH_BP = 113
    BAD_VERIFIER = 114
    DISPUTE_TOO_LONG = 115
    NONCE_AHEAD = 116


# contracts/README.md, "Exit codes" (root).
ROOT_EXIT_MEANINGS: dict[int, str] = {
    RootErr.MALFORMED: "malformed body",
    RootErr.UNKNOWN_OP: "unknown op",
    RootErr.NOT_OWNER: "not the owner",
    RootErr.LOW_VALUE: "value below the 0.01 TON fee allowance",
    RootErr.BAD_KIND: "unknown list kind",
    RootErr.BAD_PARAMS: "params out of range",
    RootErr.BAD_PROXY: "proxy entry with a zero node key or an empty endpoint",
    RootErr.NOT_VERDICT: "the signed cell is not a verdict",
    RootErr.WRONG_NETWORK: "verdict for another network",
    RootErr.NOT_VERIFIER: "a verdict signer the root does not list as a verifier",
    RootErr.BAD_VERDICT_SIG: "a verdict signature that does not verify",
    RootErr.SAME_VERIFIER: "one verifier signed twice",
    RootErr.NO_QUORUM: "fewer distinct verifier signatures than the quorum",
    RootErr.BAD_SLASH_BP: "verdict slashes 0 or more than 10000 basis points",
    RootErr.BAD_VERIFIER: "verifier key of zero",
    RootErr.DISPUTE_TOO_LONG: "dispute delay above the unbonding delay",
    RootErr.NONCE_AHEAD: "verdict nonce more than an hour ahead (microseconds since the epoch)",
}


def root_exit_meaning(exit_code: int) -> str:
    return ROOT_EXIT_MEANINGS.get(exit_code, f"TVM exit code {exit_code}")


class HashKind:
    """The lists of ``SetHash``."""

    PROXY_IMAGE = 1
    WORKER_IMAGE = 2
    MODEL = 3


# The trust tiers a request may ask for (DESIGN.md §11), in the Market cell's order.
TRUST_TIERS = ("tee", "gpu", "audited", "replicated", "region")

# Field widths of the Params and Market cells (root.tolk), for range checks.
_UINT32 = 2**32 - 1
_UINT16 = 2**16 - 1
_COINS = 2**120 - 1
_LIMITS = {
    "base_price_nano": _COINS,
    "commission_bp": _UINT16,
    "min_client_deposit": _COINS,
    "min_proxy_deposit": _COINS,
    "min_worker_stake": _COINS,
    "min_proxy_stake": _COINS,
}


@dataclass(frozen=True)
class RootParams:
    """The root's price list, close delays, minimum deposits and stakes, unbonding delay and
    trust-tier multipliers, as the contract stores them (Params and Market cells).

    Only field widths are checked here; the contract refuses out-of-range values
    (zero price, multiplier or tier; commission above 100 %) with exit 105."""

    base_price_nano: int = 1_000  # nanotons per token, before multipliers
    prompt_bp: int = 10_000  # class multipliers, basis points
    cached_bp: int = 1_000
    completion_bp: int = 40_000
    reasoning_bp: int = 40_000
    commission_bp: int = 1_000  # the proxy's commission, basis points of the worker price
    client_close_delay: int = 3_600  # seconds, client->proxy channels
    worker_close_delay: int = 3_600  # seconds, proxy->worker channels
    min_client_deposit: int = 1_000_000_000  # nanotons
    min_proxy_deposit: int = 1_000_000_000  # nanotons, into a worker channel
    # The market (Market cell). Stakes are small enough for the local network's funded
    # wallets; a public network sets its own.
    min_worker_stake: int = 10 * TON  # nanotons a worker locks before serving
    min_proxy_stake: int = 10 * TON  # nanotons a proxy locks before serving
    unbonding_delay: int = 3_600  # seconds from asking for a stake back to getting it
    tier_tee_bp: int = 10_000  # price multiplier of each trust tier, basis points
    tier_gpu_bp: int = 12_000
    tier_audited_bp: int = 15_000
    tier_replicated_bp: int = 30_000  # three workers run the request
    tier_region_bp: int = 11_000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            top = _LIMITS.get(f.name, _UINT32)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
                raise ValueError(f"root param {f.name} must be an integer in 0..{top}, not {v!r}")

    def prices(self) -> Prices:
        """The same prices in thousandths; a multiplier that is not a whole number of
        thousandths (bp not divisible by 10) has no exact equivalent and is refused."""
        milli = {}
        for name, bp in (
            ("prompt_milli", self.prompt_bp),
            ("cached_prompt_milli", self.cached_bp),
            ("completion_milli", self.completion_bp),
            ("reasoning_milli", self.reasoning_bp),
        ):
            if bp % 10:
                raise ValueError(
                    f"{name.removesuffix('_milli')} multiplier {bp} bp is not divisible by 10: "
                    "no exact price in thousandths"
                )
            milli[name] = bp // 10
        return Prices(base_nano_per_token=self.base_price_nano, **milli)

    def tier_bp(self, tier: str) -> int:
        """The multiplier of a trust tier (one of :data:`TRUST_TIERS`), basis points."""
        if tier not in TRUST_TIERS:
            raise ValueError(
                f"unknown trust tier {tier!r}; expected one of {', '.join(TRUST_TIERS)}"
            )
        return int(getattr(self, f"tier_{tier}_bp"))


@dataclass(frozen=True)
class RegisteredProxy:
    """A proxy the root lists: its wallet (raw address ``0:<64 hex>``), where it serves
    (``host:port``), and the Ed25519 public key of its node identity, which its attested
    TLS certificate must carry."""

    wallet: str
    endpoint: str
    node_key: bytes  # 32 bytes

    def __post_init__(self) -> None:
        if len(self.node_key) != 32:
            raise ValueError(f"a proxy's node key is 32 bytes, not {len(self.node_key)}")
        if not self.endpoint:
            raise ValueError("a proxy's endpoint must not be empty")


@cache
def _code_boc(path: Path) -> bytes:
    return base64.b64decode(json.loads(path.read_text())["codeBoc64"])


def root_code(contracts: Path | None = None) -> Cell:
    """The committed compiled code (``contracts/build/root.json``)."""
    return Cell.one_from_boc(_code_boc((contracts or contracts_dir()) / "build" / "root.json"))


def params_cell(p: RootParams) -> Cell:
    return (
        Builder()
        .store_coins(p.base_price_nano)
        .store_uint(p.prompt_bp, 32)
        .store_uint(p.cached_bp, 32)
        .store_uint(p.completion_bp, 32)
        .store_uint(p.reasoning_bp, 32)
        .store_uint(p.commission_bp, 16)
        .store_uint(p.client_close_delay, 32)
        .store_uint(p.worker_close_delay, 32)
        .store_coins(p.min_client_deposit)
        .store_coins(p.min_proxy_deposit)
        .end_cell()
    )


def market_cell(p: RootParams) -> Cell:
    b = Builder().store_coins(p.min_worker_stake).store_coins(p.min_proxy_stake)
    b = b.store_uint(p.unbonding_delay, 32)
    for tier in TRUST_TIERS:
        b = b.store_uint(p.tier_bp(tier), 32)
    return b.end_cell()


DEFAULT_DISPUTE_DELAY = 1_800  # seconds; capped by the unbonding delay on chain
MIN_QUORUM = 2


@dataclass(frozen=True)
class RootSlashing:
    """Who judges failed audits and how a verdict waits (the root's Slashing cell):
    ``dispute_delay`` seconds during which the owner may cancel a proposed slash (the
    root uses at most the unbonding delay), and ``quorum`` distinct verifier signatures
    a verdict needs."""

    dispute_delay: int = DEFAULT_DISPUTE_DELAY
    quorum: int = MIN_QUORUM
    verifiers: frozenset[bytes] = frozenset()  # 32-byte Ed25519 node keys

    def __post_init__(self) -> None:
        if not 0 <= self.dispute_delay <= _UINT32:
            raise ValueError(f"dispute delay must be 0..{_UINT32} s, not {self.dispute_delay}")
        if not MIN_QUORUM <= self.quorum <= 255:
            raise ValueError(f"quorum must be {MIN_QUORUM}..255, not {self.quorum}")
        if any(len(k) != 32 for k in self.verifiers):
            raise ValueError("a verifier key is 32 bytes")


def slashing_cell(s: RootSlashing) -> Cell:
    """``verifiers:(HashmapE 256 bool) disputeDelay:uint32 quorum:uint8``."""
    verifiers = HashMap(256, value_serializer=lambda v, b: b.store_bit(v))
    for k in s.verifiers:
        verifiers.set_int_key(int.from_bytes(k, "big"), 1)
    b = Builder().store_maybe_ref(verifiers.serialize() if s.verifiers else None)
    return b.store_uint(s.dispute_delay, 32).store_uint(s.quorum, 8).end_cell()


def root_data(
    owner: Address | str,
    network_id: int,
    params: RootParams,
    slashing: RootSlashing | None = None,
) -> Cell:
    """Init data: version 0, the four registry lists empty, and ``slashing`` (no
    verifiers, :data:`DEFAULT_DISPUTE_DELAY`, a quorum of 2 unless given)."""
    lists = Builder().store_bit(0).store_bit(0).store_bit(0).store_bit(0).end_cell()
    b = Builder().store_address(parse_address(owner)).store_uint(0, 32).store_int(network_id, 32)
    b = b.store_ref(params_cell(params)).store_ref(lists).store_ref(market_cell(params))
    return b.store_ref(slashing_cell(slashing or RootSlashing())).end_cell()


def root_init(
    owner: Address | str,
    network_id: int,
    params: RootParams,
    code: Cell | None = None,
    slashing: RootSlashing | None = None,
) -> tuple[Cell, Cell, Address]:
    """(code, data, address) of the root for these arguments."""
    code = root_code() if code is None else code
    data = root_data(owner, network_id, params, slashing)
    return code, data, address_of(code, data)


def proxy_entry_cell(entry: RegisteredProxy) -> Cell:
    """``nodeKey:uint256 ^endpoint`` (the endpoint a snake string)."""
    endpoint = Builder().store_snake_string(entry.endpoint).end_cell()
    return Builder().store_bytes(entry.node_key).store_ref(endpoint).end_cell()


def parse_proxy_entry(wallet: str, cell: Cell) -> RegisteredProxy:
    """The entry cell of ``wallet`` as the root stores it; ValueError if it is not one."""
    try:
        s = cell.begin_parse()
        key = bytes(s.load_bytes(32))
        endpoint = str(s.load_ref().begin_parse().load_snake_string())
        if s.remaining_bits or s.remaining_refs:
            raise ValueError("data after the entry")
    # pytoniq raises bare assertion and index errors on short or odd cells.
    except (AssertionError, IndexError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"proxy entry of {wallet} is malformed: {e}") from None
    return RegisteredProxy(wallet=wallet, endpoint=endpoint, node_key=key)
