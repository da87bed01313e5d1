"""What `cocoon root`'s command line means: its options, where the root, the chain and
the owner key come from when not given, and the parsing of what is given.

Which root: ``--root``, else ``$COCOON_ROOT``, else the root of a `cocoon up` running
in this folder (``.cocoon/run/root.json``: ``{"root", "endpoint", "owner_key"}``). The
owner key defaults to that file's ``owner_key``, else ``.cocoon/owner.key`` (where
`cocoon up` keeps it). Amounts are TON as decimal strings, converted exactly to
nanotons; multipliers are basis points (10000 = x1); delays are seconds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import (
    ENDPOINT_ENV,
    UP_DATA_DIR,
    ApiKeyOpt,
    CliError,
    WalletVersionOpt,
    parse_address,
    parse_ton,
    up_file,
)

if TYPE_CHECKING:
    from ..chain.root import RootParams

ROOT_ENV = "COCOON_ROOT"
DEFAULT_OWNER_KEY = UP_DATA_DIR / "owner.key"

RootOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Root contract address (default: ${ROOT_ENV}, else the root of a"
        " `cocoon up` running here)."
    ),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="The owner's wallet key file (default: the owner key of a `cocoon up` here).",
    ),
]
_ENDPOINT_HELP = (
    f"toncenter v2 endpoint (default: ${ENDPOINT_ENV}, else the chain of a"
    " `cocoon up` running here)."
)
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", "--chain-endpoint", help=_ENDPOINT_HELP)
]
# add-proxy's --endpoint is the proxy's: there the chain's is --chain-endpoint only.
ChainEndpointOpt = Annotated[str | None, typer.Option("--chain-endpoint", help=_ENDPOINT_HELP)]


@dataclass(frozen=True)
class RootTarget:
    """The root a command changes, the owner's key and the chain: the options of every
    owner update (unresolved; :func:`root_of`, :func:`owner_key_file` and
    :func:`~cocoon.commands.common.chain_endpoint` resolve them)."""

    root: RootOpt = None
    key_file: KeyFileOpt = None
    wallet_version: WalletVersionOpt = "v4r2"
    endpoint: EndpointOpt = None
    api_key: ApiKeyOpt = None


# The param flags: each option is named after its RootParams field (see ParamFlags).
BasePriceOpt = Annotated[
    int | None, typer.Option(min=0, help="Base price, nanotons per token before multipliers.")
]
PromptOpt = Annotated[int | None, typer.Option(min=0, help="Prompt token multiplier, bp.")]
CachedOpt = Annotated[int | None, typer.Option(min=0, help="Cached prompt token multiplier, bp.")]
CompletionOpt = Annotated[int | None, typer.Option(min=0, help="Completion multiplier, bp.")]
ReasoningOpt = Annotated[int | None, typer.Option(min=0, help="Reasoning multiplier, bp.")]
CommissionOpt = Annotated[int | None, typer.Option(min=0, help="Proxy commission, bp.")]
ClientDelayOpt = Annotated[
    int | None, typer.Option(min=0, help="Close delay of client->proxy channels, s.")
]
WorkerDelayOpt = Annotated[
    int | None, typer.Option(min=0, help="Close delay of proxy->worker channels, s.")
]
ClientDepositOpt = Annotated[str | None, typer.Option(help="Minimum client deposit, TON.")]
ProxyDepositOpt = Annotated[
    str | None, typer.Option(help="Minimum proxy deposit into a worker channel, TON.")
]
WorkerStakeOpt = Annotated[str | None, typer.Option(help="Minimum worker stake, TON.")]
ProxyStakeOpt = Annotated[str | None, typer.Option(help="Minimum proxy stake, TON.")]
UnbondingOpt = Annotated[
    int | None, typer.Option(min=0, help="Unbonding delay of stakes, seconds.")
]
TierTeeOpt = Annotated[int | None, typer.Option(min=0, help="Tier 'tee' multiplier, bp.")]
TierGpuOpt = Annotated[int | None, typer.Option(min=0, help="Tier 'gpu' multiplier, bp.")]
TierAuditedOpt = Annotated[int | None, typer.Option(min=0, help="Tier 'audited' multiplier, bp.")]
TierReplicatedOpt = Annotated[
    int | None, typer.Option(min=0, help="Tier 'replicated' multiplier, bp.")
]
TierRegionOpt = Annotated[int | None, typer.Option(min=0, help="Tier 'region' multiplier, bp.")]


@dataclass(frozen=True)
class ParamFlags:
    """The param flags of `deploy` and `set-params`, each named after its RootParams
    field; None where not given (see :func:`param_changes`)."""

    base_price_nano: BasePriceOpt = None
    prompt_bp: PromptOpt = None
    cached_bp: CachedOpt = None
    completion_bp: CompletionOpt = None
    reasoning_bp: ReasoningOpt = None
    commission_bp: CommissionOpt = None
    client_close_delay: ClientDelayOpt = None
    worker_close_delay: WorkerDelayOpt = None
    min_client_deposit: ClientDepositOpt = None
    min_proxy_deposit: ProxyDepositOpt = None
    min_worker_stake: WorkerStakeOpt = None
    min_proxy_stake: ProxyStakeOpt = None
    unbonding_delay: UnbondingOpt = None
    tier_tee_bp: TierTeeOpt = None
    tier_gpu_bp: TierGpuOpt = None
    tier_audited_bp: TierAuditedOpt = None
    tier_replicated_bp: TierReplicatedOpt = None
    tier_region_bp: TierRegionOpt = None


# Params given in TON on the command line (all others are plain integers).
TON_PARAMS = frozenset(
    {"min_client_deposit", "min_proxy_deposit", "min_worker_stake", "min_proxy_stake"}
)


# -- where things are -------------------------------------------------------------------


def _up_root() -> dict[str, object]:
    """What `cocoon up` running in this folder says about its root ({} when none)."""
    return up_file(UP_DATA_DIR, "root.json") or {}


def root_of(root: str | None) -> str:
    """--root, else $COCOON_ROOT, else the root of a `cocoon up` here; raw form."""
    given = root or os.environ.get(ROOT_ENV) or _up_root().get("root")
    if not given:
        raise CliError(
            f"which root? give --root, set ${ROOT_ENV}, or run `cocoon up` in this folder"
        )
    return parse_address(str(given), "root")


def owner_key_file(key_file: Path | None) -> Path:
    if key_file is not None:
        return key_file
    up = _up_root().get("owner_key")
    return Path(str(up)) if up else DEFAULT_OWNER_KEY


# -- parsing ----------------------------------------------------------------------------

_KINDS = {"proxy-image": 1, "worker-image": 2, "model": 3}  # HashKind
_HEX64 = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")


def parse_hash(kind: str, text: str) -> tuple[int, str]:
    """(HashKind, lowercase hex) of KIND and HASH: 64 hex digits (``sha256:`` may
    precede them); a model may also be given as its full id ``name@sha256:<hex>``."""
    from ..tee.model_id import ModelIdError, parse_model_id

    if kind not in _KINDS:
        raise CliError(f"kind {kind!r}: expected one of {', '.join(_KINDS)}")
    text = text.strip()
    m = _HEX64.fullmatch(text)
    if m is not None:
        return _KINDS[kind], m.group(1).lower()
    if kind == "model" and "@" in text:
        try:
            return _KINDS[kind], parse_model_id(text)[1]
        except ModelIdError as exc:
            raise CliError(f"model {exc}") from None
    expected = "64 hex digits" + (" or name@sha256:<64 hex digits>" if kind == "model" else "")
    raise CliError(f"hash {text!r}: expected {expected}")


def parse_endpoint(text: str) -> str:
    """``host:port`` (an IPv6 host in brackets), port 1..65535."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"endpoint {text!r}: expected host:port")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise CliError(f"endpoint {text!r}: put an IPv6 host in brackets, [::1]:443")
    return f"{host}:{int(port)}"


def parse_node_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CliError(f"node key {text!r}: expected 64 hex digits (an Ed25519 public key)")
    return key


def param_changes(flags: ParamFlags) -> dict[str, int]:
    """The params given on the command line, TON amounts converted to nanotons."""
    out = {}
    for f in fields(flags):
        v = getattr(flags, f.name)
        if v is not None:
            out[f.name] = parse_ton(v) if f.name in TON_PARAMS else int(v)
    return out


def with_changes(base: RootParams, changes: dict[str, int]) -> RootParams:
    try:
        return replace(base, **changes)
    except ValueError as exc:
        raise CliError(str(exc)) from None
