"""The root contract (``contracts/contracts/root.tolk``) from Python: the network's registry.

A mirror of ``contracts/wrappers/Root.ts`` (formats in ``contracts/README.md``): init
data, the ``SetParams`` body, and the ``config()`` get-method. The contract keeps
multipliers and the proxy commission in basis points (1/10000); :meth:`RootParams.prices`
turns them into :class:`~cocoon.pricing.Prices` (thousandths), exactly or not at all.
Amounts are integer nanotons.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from pytoniq_core.boc import Address, Builder, Cell

from ..pricing import Prices
from .channel import address_of, parse_address, raw_address
from .local import LocalChainClient, contracts_dir
from .toncenter import ChainError, GetMethodResult, TonCenterClient

__all__ = [
    "ROOT_FEE_UPDATE",
    "BadRootAnswer",
    "RootConfig",
    "RootErr",
    "RootError",
    "RootNotDeployed",
    "RootOp",
    "RootParams",
    "deploy_root",
    "params_cell",
    "read_root",
    "root_code",
    "root_data",
    "root_init",
    "set_params_body",
]

TON = 1_000_000_000
BPS = 10_000
ROOT_FEE_UPDATE = 10_000_000  # the value an owner update must carry at least


class RootOp:
    SET_PARAMS = 0x73707273
    SET_HASH = 0x73687368
    SET_PROXY = 0x73707278
    SET_OWNER = 0x736F776E


class RootErr:
    """The root's exit codes (``contracts/README.md``)."""

    MALFORMED = 100
    UNKNOWN_OP = 101
    NOT_OWNER = 102
    LOW_VALUE = 103
    BAD_KIND = 104
    BAD_PARAMS = 105


class RootError(Exception):
    """The root contract could not be read."""


class RootNotDeployed(RootError):
    """No root contract is active at that address."""


class BadRootAnswer(RootError):
    """The account answered ``config()`` with something that is not a root's config."""


# Field widths of the Params cell (root.tolk `struct Params`), for range checks.
_UINT32 = 2**32 - 1
_UINT16 = 2**16 - 1
_COINS = 2**120 - 1


@dataclass(frozen=True)
class RootParams:
    """The root's price list, close delays and minimum deposits, as the contract stores them."""

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

    def __post_init__(self) -> None:
        limits = {
            "base_price_nano": _COINS,
            "commission_bp": _UINT16,
            "min_client_deposit": _COINS,
            "min_proxy_deposit": _COINS,
        }
        for f in fields(self):
            v = getattr(self, f.name)
            top = limits.get(f.name, _UINT32)
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


@dataclass(frozen=True)
class RootConfig:
    """What ``config()`` answers: the version counter (bumped by every owner update),
    the network id and the params."""

    version: int
    network_id: int
    params: RootParams


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


def root_data(owner: Address | str, network_id: int, params: RootParams) -> Cell:
    """Init data: version 0 and the four registry lists empty."""
    lists = Builder().store_bit(0).store_bit(0).store_bit(0).store_bit(0).end_cell()
    b = Builder().store_address(parse_address(owner)).store_uint(0, 32).store_int(network_id, 32)
    return b.store_ref(params_cell(params)).store_ref(lists).end_cell()


def root_init(
    owner: Address | str, network_id: int, params: RootParams, code: Cell | None = None
) -> tuple[Cell, Cell, Address]:
    """(code, data, address) of the root for these arguments."""
    code = root_code() if code is None else code
    data = root_data(owner, network_id, params)
    return code, data, address_of(code, data)


def set_params_body(params: RootParams, query_id: int = 0) -> Cell:
    """The owner's ``SetParams`` (send with at least :data:`ROOT_FEE_UPDATE`)."""
    b = Builder().store_uint(RootOp.SET_PARAMS, 32).store_uint(query_id, 64)
    return b.store_ref(params_cell(params)).end_cell()


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


def _decode_config(r: GetMethodResult) -> RootConfig:
    try:
        n = [r.int_at(i) for i in range(12)]
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
        )
    except (IndexError, TypeError, ValueError) as e:
        raise BadRootAnswer(f"config() answered {r.stack!r}: {e}") from None
    return RootConfig(version=n[0], network_id=n[1], params=params)


async def read_root(client: TonCenterClient, address: str) -> RootConfig:
    """The root's ``config()``. Raises :class:`RootNotDeployed` when no contract is active
    at ``address``, :class:`BadRootAnswer` when the one there is not a root."""
    try:
        r = await client.run_get_method(address, "config")
    except ChainError:
        # toncenter refuses get-methods on accounts without code; the local chain answers -13.
        if not (await client.get_address_information(address)).active:
            raise RootNotDeployed(f"no root contract at {address} (account not active)") from None
        raise
    if r.exit_code != 0:
        if not (await client.get_address_information(address)).active:
            raise RootNotDeployed(f"no root contract at {address} (account not active)")
        raise BadRootAnswer(f"config() at {address} exited with code {r.exit_code}")
    return _decode_config(r)
