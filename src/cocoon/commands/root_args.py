"""What `cocoon root`'s command line means: its options, where the root, the chain and
the owner key come from when not given, and the parsing of what is given.

Which root: ``--root``, else ``$COCOON_ROOT``, else the root of a `cocoon up` running
in this folder (``.cocoon/run/root.json``: ``{"root", "endpoint", "owner_key"}``). The
owner key defaults to that file's ``owner_key``, else ``.cocoon/owner.key`` (where
`cocoon up` keeps it). Amounts are TON as decimal strings, converted exactly to
nanotons; multipliers are basis points (10000 = x1); delays are seconds.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .wallet import ENDPOINT_ENV, WalletCliError, _address, endpoint_of, parse_ton

if TYPE_CHECKING:
    from ..chain.root import RootParams

ROOT_ENV = "COCOON_ROOT"
# While `cocoon up` runs in this folder, its root is described here.
UP_ROOT_FILE = Path(".cocoon") / "run" / "root.json"
DEFAULT_OWNER_KEY = Path(".cocoon") / "owner.key"

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
ApiKeyOpt = Annotated[str | None, typer.Option(help="toncenter API key.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]

# The param flags: each option is named after its RootParams field (see param_changes).
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

# Params given in TON on the command line (all others are plain integers).
TON_PARAMS = frozenset(
    {"min_client_deposit", "min_proxy_deposit", "min_worker_stake", "min_proxy_stake"}
)


class RootCliError(WalletCliError):
    """What the user asked cannot be done; the message is the one line the CLI prints."""


# -- where things are -------------------------------------------------------------------


def _up_root() -> dict[str, Any]:
    """What `cocoon up` running in this folder says about its root ({} when none)."""
    try:
        info = json.loads(UP_ROOT_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def root_of(root: str | None) -> str:
    """--root, else $COCOON_ROOT, else the root of a `cocoon up` here; raw form."""
    given = root or os.environ.get(ROOT_ENV) or _up_root().get("root")
    if not given:
        raise RootCliError(
            f"which root? give --root, set ${ROOT_ENV}, or run `cocoon up` in this folder"
        )
    return _address(str(given), "root")


def endpoint_for(endpoint: str | None) -> str:
    """--endpoint, else $COCOON_CHAIN_ENDPOINT, else the endpoint of a `cocoon up` here."""
    if endpoint or os.environ.get(ENDPOINT_ENV):
        return endpoint_of(endpoint)
    up = _up_root().get("endpoint")
    return str(up) if up else endpoint_of(None)


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
        raise RootCliError(f"kind {kind!r}: expected one of {', '.join(_KINDS)}")
    text = text.strip()
    m = _HEX64.fullmatch(text)
    if m is not None:
        return _KINDS[kind], m.group(1).lower()
    if kind == "model" and "@" in text:
        try:
            return _KINDS[kind], parse_model_id(text)[1]
        except ModelIdError as exc:
            raise RootCliError(f"model {exc}") from None
    expected = "64 hex digits" + (" or name@sha256:<64 hex digits>" if kind == "model" else "")
    raise RootCliError(f"hash {text!r}: expected {expected}")


def parse_endpoint(text: str) -> str:
    """``host:port`` (an IPv6 host in brackets), port 1..65535."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RootCliError(f"endpoint {text!r}: expected host:port")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise RootCliError(f"endpoint {text!r}: put an IPv6 host in brackets, [::1]:443")
    return f"{host}:{int(port)}"


def parse_node_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise RootCliError(f"node key {text!r}: expected 64 hex digits (an Ed25519 public key)")
    return key


def param_changes(flags: dict[str, Any]) -> dict[str, int]:
    """The params given on the command line (options are named after RootParams fields),
    TON amounts converted to nanotons."""
    from ..chain.root import RootParams

    out = {}
    for f in fields(RootParams):
        v = flags.get(f.name)
        if v is not None:
            out[f.name] = parse_ton(v) if f.name in TON_PARAMS else int(v)
    return out


def with_changes(base: RootParams, changes: dict[str, int]) -> RootParams:
    try:
        return replace(base, **changes)
    except ValueError as exc:
        raise RootCliError(str(exc)) from None
