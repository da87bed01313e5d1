"""`cocoon stake`: a node's stake (the TON it locks before it serves), by hand.

A stake is named by the network id, its authority (the root contract), its owner (the
node's wallet) and the node's identity key, the way peers derive it
(:func:`cocoon.chain.stake.stake_address`). The node is given by its data folder
(``--node-dir``: the identity key and, by default, the wallet key ``wallet.key`` found
there, as ``cocoon up`` lays them out) or by ``--key-file`` and ``--node-key``. The
root is ``--root``, else the one of a ``cocoon up`` running from this folder
(``.cocoon/run/root.json``); the network id is read from the root unless given.

Inside such a folder, ``cocoon stake show`` without a node lists every proxy's and
worker's stake. Amounts are TON as decimal strings, converted exactly to nanotons.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import msgspec
import typer

from .wallet import (
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    WalletCliError,
    WalletVersionOpt,
    format_ton,
    parse_ton,
)

if TYPE_CHECKING:  # imported when used: `cocoon --help` stays fast
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..chain.stake import StakeState
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import Wallet

app = typer.Typer(
    help="Node stakes: deposit, unbond, withdraw after the unbonding delay, show.",
    no_args_is_help=True,
)

T = TypeVar("T")
# The identity key a node keeps in its data folder (cocoon.crypto.identity).
IDENTITY_FILE = "identity.key"
# The wallet key `cocoon up` gives each node, in its data folder (payments/devnet.py).
WALLET_FILE = "wallet.key"
# The nodes that stake, by data folder name under `cocoon up`'s folder.
STAKING_NODE = re.compile(r"(proxy|worker)(\d*)")

KeyFileOpt = Annotated[
    Path | None,
    typer.Option("--key-file", help="The node's wallet key file (default: NODE_DIR/wallet.key)."),
]
NodeDirOpt = Annotated[
    Path | None,
    typer.Option("--node-dir", help="The node's data folder: its identity key (and wallet key)."),
]
NodeKeyOpt = Annotated[
    str | None,
    typer.Option("--node-key", help="The node's identity public key, 64 hex digits."),
]
RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root",
        "--authority",
        help="The root contract (the stake's authority; default: that of a `cocoon up` here).",
    ),
]
NetworkOpt = Annotated[
    int | None, typer.Option("--network-id", help="Network id (default: the root's).")
]
DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", help="The folder of a `cocoon up` network.")
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        help=f"toncenter v2 endpoint (default: ${ENDPOINT_ENV}, else the chain of a"
        f" `cocoon up` running here, else {DEFAULT_ENDPOINT}).",
    ),
]
ApiKeyOpt = Annotated[str | None, typer.Option(help="toncenter API key.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]
AmountArg = Annotated[str, typer.Argument(help="Amount in TON, e.g. 1.5 (at most 9 decimals).")]
DEFAULT_DATA_DIR = Path(".cocoon")


@dataclass(frozen=True)
class _Where:
    """Which network, chain and node a command is about (the options, unresolved)."""

    key_file: Path | None
    node_dir: Path | None
    node_key: str | None
    root: str | None
    network_id: int | None
    data_dir: Path
    endpoint: str | None
    api_key: str | None
    wallet_version: str

    @property
    def names_a_node(self) -> bool:
        return any(x is not None for x in (self.key_file, self.node_dir, self.node_key))


@dataclass(frozen=True)
class _Node:
    """One staking node: its name (for lists), wallet key file and identity key."""

    name: str
    key_file: Path
    node_key: bytes


# -- running ----------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    # One line: a chain's refusal may append its emulator's log below the reason.
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    typer.echo(f"cocoon: error: {first}", err=True)
    raise typer.Exit(1)


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run one command; what a user can fix becomes one line on stderr and exit 1."""
    from ..chain.root import RootError
    from ..chain.stake import StakeError
    from ..chain.toncenter import ChainError
    from ..chain.wallet import WalletError

    async def main() -> T:
        return await make()

    try:
        return asyncio.run(main())
    except WalletCliError as exc:
        _fail(str(exc))
    except ChainError as exc:
        _fail(f"chain: {exc}")
    except RootError as exc:
        _fail(f"root: {exc}")
    except (StakeError, WalletError) as exc:
        _fail(str(exc))
    except OSError as exc:
        name = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{name}{exc.strerror or exc}")


def _amount(text: str) -> int:
    try:
        return parse_ton(text)
    except WalletCliError as exc:
        _fail(str(exc))


def _emit(as_json: bool, obj: Any, lines: list[str]) -> None:
    if as_json:
        typer.echo(msgspec.json.encode(obj).decode())
    else:
        for line in lines:
            typer.echo(line)


# -- resolving the network and the node -------------------------------------------------


def _up_file(data_dir: Path, name: str) -> dict[str, Any] | None:
    """A JSON file `cocoon up` keeps in its run folder while it runs, or None."""
    try:
        obj = json.loads((data_dir / "run" / name).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _endpoint(w: _Where) -> str:
    """--endpoint, else $COCOON_CHAIN_ENDPOINT, else the chain of a `cocoon up` running
    from --data-dir, else the default port of `cocoon chain`."""
    if w.endpoint or os.environ.get(ENDPOINT_ENV):
        return w.endpoint or os.environ[ENDPOINT_ENV]
    for name in ("root.json", "chain.ready"):
        up = _up_file(w.data_dir, name)
        if up is not None and isinstance(up.get("endpoint"), str):
            return str(up["endpoint"])
    return DEFAULT_ENDPOINT


def _address(text: str, what: str) -> str:
    from pytoniq_core.boc import Address
    from pytoniq_core.boc.address import AddressError

    try:
        return str(Address(text.strip()).to_str(is_user_friendly=False))
    # pytoniq raises AddressError, and IndexError/ValueError on some malformed strings.
    except (AddressError, IndexError, ValueError):
        raise WalletCliError(f"{what} {text!r} is not a TON address") from None


def _root(w: _Where) -> str:
    if w.root is not None:
        return _address(w.root, "--root")
    up = _up_file(w.data_dir, "root.json")
    if up is not None and isinstance(up.get("root"), str):
        return _address(up["root"], f"the root in {w.data_dir / 'run' / 'root.json'}")
    raise WalletCliError(
        "give --root (the root contract), or run where `cocoon up` runs (it writes"
        f" {w.data_dir / 'run' / 'root.json'})"
    )


def _node_public_key(node_dir: Path) -> bytes:
    """The node's Ed25519 public key, from the raw 32-byte private key it keeps."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = node_dir / IDENTITY_FILE
    if not path.is_file():
        raise WalletCliError(f"{node_dir} holds no node identity ({IDENTITY_FILE}); has it run?")
    data = path.read_bytes()
    if len(data) != 32:
        raise WalletCliError(f"{path}: expected a raw 32-byte Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(data).public_key().public_bytes_raw()


def _one_node(w: _Where) -> _Node:
    if w.node_dir is not None and w.node_key is not None:
        raise WalletCliError("give --node-dir or --node-key, not both")
    if w.node_dir is not None:
        key = _node_public_key(w.node_dir)
        key_file = w.key_file or w.node_dir / WALLET_FILE
        return _Node(w.node_dir.name, key_file, key)
    if w.node_key is None or w.key_file is None:
        raise WalletCliError(
            "name the node: --node-dir DIR, or --key-file (its wallet) and --node-key HEX"
        )
    try:
        key = bytes.fromhex(w.node_key.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise WalletCliError("--node-key: expected 64 hex digits (a 32-byte Ed25519 public key)")
    return _Node("node", w.key_file, key)


def _up_nodes(w: _Where) -> list[_Node]:
    """The proxies and workers of the `cocoon up` network in --data-dir that have an
    identity and a wallet, in order (proxy1, proxy2, …, worker1, worker2, …)."""
    found = []
    for d in w.data_dir.iterdir() if w.data_dir.is_dir() else []:
        m = STAKING_NODE.fullmatch(d.name)
        if m and (d / IDENTITY_FILE).is_file() and (d / WALLET_FILE).is_file():
            found.append(((m.group(1), int(m.group(2) or 0)), d))
    return [_Node(d.name, d / WALLET_FILE, _node_public_key(d)) for _, d in sorted(found)]


async def _wallet(client: TonCenterClient, key_file: Path, version: str) -> Wallet:
    from ..chain.wallet import open_wallet

    return await open_wallet(client, _load_key(key_file), version)


def _load_key(key_file: Path) -> Ed25519PrivateKey:
    from ..chain.wallet import WalletError, load_key_file

    if not key_file.is_file():
        raise WalletCliError(f"key file {key_file} does not exist (create one: cocoon wallet new)")
    try:
        return load_key_file(key_file)
    except (WalletError, ValueError, UnicodeDecodeError) as exc:
        raise WalletCliError(f"key file {key_file}: {exc}") from None


@dataclass(frozen=True)
class _Network:
    root: str
    network_id: int
    unbond_delay: int | None  # the root's unbonding delay, when it was read


async def _network(client: TonCenterClient, w: _Where, *, need_delay: bool = False) -> _Network:
    """The root and network id; the root is read only for what was not given."""
    from ..chain.root import read_root

    root = _root(w)
    if w.network_id is not None and not need_delay:
        return _Network(root, w.network_id, None)
    cfg = await read_root(client, root)
    network_id = cfg.network_id if w.network_id is None else w.network_id
    return _Network(root, network_id, cfg.params.unbonding_delay)


# -- describing -------------------------------------------------------------------------


def _utc(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def _record(name: str, address: str, owner: str, node_key: bytes, st: StakeState) -> dict[str, Any]:
    return {
        "node": name,
        "stake": address,
        "owner": owner,
        "node_key": node_key.hex(),
        "deployed": st.active,
        "bonded_nano": st.bonded_nano,
        "unbonding_nano": st.unbonding_nano,
        "unlock_at": st.unlock_at,
        "unbond_delay": st.unbond_delay,
        "slashed_nano": st.slashed_nano,
        "balance_nano": st.balance_nano,
    }


def _lines(r: dict[str, Any]) -> list[str]:
    head = [f"stake: {r['stake']}", f"node key: {r['node_key']}", f"owner: {r['owner']}"]
    if not r["deployed"]:
        return [*head, "state: not deployed (its first deposit deploys it)"]
    unbonding = f"unbonding: {format_ton(r['unbonding_nano'])} TON"
    if r["unbonding_nano"]:
        unbonding += f" (withdrawable from {_utc(r['unlock_at'])}, unix {r['unlock_at']})"
    return [
        *head,
        f"bonded: {format_ton(r['bonded_nano'])} TON",
        unbonding,
        f"unbond delay: {r['unbond_delay']} s",
        f"slashed: {format_ton(r['slashed_nano'])} TON",
        f"balance: {format_ton(r['balance_nano'])} TON",
    ]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = (
        "node",
        "stake",
        "bonded TON",
        "unbonding TON",
        "withdrawable from",
        "delay",
        "slashed TON",
    )
    body = [
        (
            r["node"],
            r["stake"],
            format_ton(r["bonded_nano"]) if r["deployed"] else "not staked",
            format_ton(r["unbonding_nano"]),
            _utc(r["unlock_at"]) if r["unbonding_nano"] else "-",
            f"{r['unbond_delay']} s",
            format_ton(r["slashed_nano"]),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in (header, *body)) for i in range(len(header))]
    return [
        "  ".join(c.ljust(n) for c, n in zip(cells, widths, strict=True)).rstrip()
        for cells in (header, *body)
    ]


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The stake a command acts on, resolved."""

    wallet: Wallet  # the owner's
    address: str
    network: _Network
    node: _Node


Act = Callable[[_Target], Awaitable[str]]


def _node_command(w: _Where, as_json: bool, act: Act | None, *, need_delay: bool = False) -> None:
    """Resolve the node's stake, run ``act`` on it if any, then describe the stake."""
    from ..chain.stake import read_stake, stake_address
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        node = _one_node(w)
        async with TonCenterClient(_endpoint(w), w.api_key) as client:
            wallet = await _wallet(client, node.key_file, w.wallet_version)
            net = await _network(client, w, need_delay=need_delay)
            address = stake_address(net.network_id, net.root, wallet.raw_address, node.node_key)
            if act is not None:
                done = await act(_Target(wallet, address, net, node))
                if not as_json:
                    typer.echo(done)
            st = await read_stake(client, address)
        r = _record(node.name, address, wallet.raw_address, node.node_key, st)
        _emit(as_json, r, _lines(r))

    _run(main)


def _list_command(w: _Where, as_json: bool) -> None:
    """Every staking node of the `cocoon up` network in --data-dir, one row each."""
    from ..chain.stake import read_stake, stake_address
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        nodes = _up_nodes(w)
        if not nodes:
            raise WalletCliError(
                f"no proxy or worker with a wallet and an identity in {w.data_dir}"
            )
        async with TonCenterClient(_endpoint(w), w.api_key) as client:
            net = await _network(client, w)
            rows = []
            for node in nodes:
                owner = (await _wallet(client, node.key_file, w.wallet_version)).raw_address
                address = stake_address(net.network_id, net.root, owner, node.node_key)
                st = await read_stake(client, address)
                rows.append(_record(node.name, address, owner, node.node_key, st))
        _emit(as_json, rows, _table(rows))

    _run(main)


@app.command()
def show(
    key_file: KeyFileOpt = None,
    node_dir: NodeDirOpt = None,
    node_key: NodeKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    root: RootOpt = None,
    network_id: NetworkOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A node's stake; with no node named, where `cocoon up` runs: every node's stake."""
    w = _Where(
        key_file, node_dir, node_key, root, network_id, data_dir, endpoint, api_key, wallet_version
    )
    if not w.names_a_node and (data_dir / "run" / "chain.ready").exists():
        _list_command(w, as_json)
    else:
        _node_command(w, as_json, None)


@app.command()
def deposit(
    amount: AmountArg,
    key_file: KeyFileOpt = None,
    node_dir: NodeDirOpt = None,
    node_key: NodeKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    unbond_delay: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=366 * 24 * 3600,
            help="Seconds from an unbond request to its withdrawal (default: the root's"
            " unbonding delay, else 3600). Only ever raises the stake's delay.",
        ),
    ] = None,
    root: RootOpt = None,
    network_id: NetworkOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bond AMOUNT more (the first deposit deploys the stake)."""
    from ..chain.stake import DEFAULT_UNBOND_DELAY, FEE_DEPOSIT, deposit_stake

    nano = _amount(amount)
    w = _Where(
        key_file, node_dir, node_key, root, network_id, data_dir, endpoint, api_key, wallet_version
    )

    async def act(t: _Target) -> str:
        balance = await t.wallet.balance()
        if balance < nano + FEE_DEPOSIT:
            raise WalletCliError(
                f"wallet {t.wallet.raw_address} holds {format_ton(balance)} TON: not enough"
                f" for {format_ton(nano)} TON + {format_ton(FEE_DEPOSIT)} TON kept for fees"
            )
        delay = unbond_delay
        if delay is None:
            delay = t.network.unbond_delay
        if delay is None:
            delay = DEFAULT_UNBOND_DELAY
        await deposit_stake(
            t.wallet,
            network_id=t.network.network_id,
            authority=t.network.root,
            node_key=t.node.node_key,
            amount_nano=nano,
            unbond_delay=delay,
        )
        return f"deposited {format_ton(nano)} TON (unbond delay at least {delay} s)"

    _node_command(w, as_json, act, need_delay=unbond_delay is None)


@app.command()
def unbond(
    amount: AmountArg,
    key_file: KeyFileOpt = None,
    node_dir: NodeDirOpt = None,
    node_key: NodeKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    root: RootOpt = None,
    network_id: NetworkOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start unbonding AMOUNT; a new request restarts the delay for all that is unbonding."""
    from ..chain.stake import request_unbond

    nano = _amount(amount)
    w = _Where(
        key_file, node_dir, node_key, root, network_id, data_dir, endpoint, api_key, wallet_version
    )

    async def act(t: _Target) -> str:
        await request_unbond(t.wallet, t.address, nano)
        return f"unbonding {format_ton(nano)} TON"

    _node_command(w, as_json, act)


@app.command()
def withdraw(
    key_file: KeyFileOpt = None,
    node_dir: NodeDirOpt = None,
    node_key: NodeKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    root: RootOpt = None,
    network_id: NetworkOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take back what has finished unbonding, to the node's wallet."""
    from ..chain.stake import StakeErr, StakeRefused, read_stake, withdraw_stake

    w = _Where(
        key_file, node_dir, node_key, root, network_id, data_dir, endpoint, api_key, wallet_version
    )

    async def act(t: _Target) -> str:
        before = await read_stake(t.wallet.client, t.address)
        try:
            await withdraw_stake(t.wallet, t.address)
        except StakeRefused as exc:
            if exc.exit_code != StakeErr.TOO_EARLY:
                raise
            raise WalletCliError(f"{exc}; withdrawable from {_utc(before.unlock_at)}") from None
        return f"withdrawn {format_ton(before.unbonding_nano)} TON"

    _node_command(w, as_json, act)
