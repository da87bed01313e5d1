"""What `cocoon stake`'s command line means: its options, and where the node, the root,
the network id and the chain come from when not given.

Which node: ``--node-dir`` (its identity key ``identity.key`` and, unless
``--key-file``, its wallet key ``wallet.key``, as ``cocoon up`` lays them out), or
``--key-file`` and ``--node-key``. Which root (the stakes' authority): ``--root``, else
``$COCOON_ROOT``, else the root of a ``cocoon up`` running from ``--data-dir``
(``run/root.json``). The network id is the root's unless ``--network-id`` is given. The
chain: ``--endpoint``, else ``$COCOON_CHAIN_ENDPOINT``, else that of the running
``cocoon up``, else the default port of ``cocoon chain``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import (
    UP_DATA_DIR,
    ApiKeyOpt,
    CliError,
    EndpointOpt,
    WalletVersionOpt,
    load_key,
    parse_address,
    up_file,
)
from .root_args import ROOT_ENV

if TYPE_CHECKING:
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import Wallet

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
        help=f"The root contract, the stakes' authority (default: ${ROOT_ENV}, else that of a"
        " `cocoon up` running here).",
    ),
]
NetworkOpt = Annotated[
    int | None, typer.Option("--network-id", help="Network id (default: the root's).")
]
DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", help="The folder of a `cocoon up` network.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]
DEFAULT_DATA_DIR = UP_DATA_DIR


@dataclass(frozen=True)
class Where:
    """Which network, chain and node a command is about: the options every `cocoon
    stake` command takes (unresolved)."""

    key_file: KeyFileOpt = None
    node_dir: NodeDirOpt = None
    node_key: NodeKeyOpt = None
    wallet_version: WalletVersionOpt = "v4r2"
    root: RootOpt = None
    network_id: NetworkOpt = None
    data_dir: DataDirOpt = DEFAULT_DATA_DIR
    endpoint: EndpointOpt = None
    api_key: ApiKeyOpt = None

    @property
    def names_a_node(self) -> bool:
        return any(x is not None for x in (self.key_file, self.node_dir, self.node_key))


@dataclass(frozen=True)
class Node:
    """One staking node: its name (for lists), wallet key file and identity key."""

    name: str
    key_file: Path
    node_key: bytes


def root_for(w: Where) -> str:
    if w.root is not None:
        return parse_address(w.root, "--root")
    if os.environ.get(ROOT_ENV):
        return parse_address(os.environ[ROOT_ENV], f"${ROOT_ENV}")
    up = up_file(w.data_dir, "root.json")
    if up is not None and isinstance(up.get("root"), str):
        return parse_address(up["root"], f"the root in {w.data_dir / 'run' / 'root.json'}")
    raise CliError(
        f"give --root (the root contract), set ${ROOT_ENV}, or run where `cocoon up` runs"
        f" (it writes {w.data_dir / 'run' / 'root.json'})"
    )


def _node_public_key(node_dir: Path) -> bytes:
    """The node's Ed25519 public key, from the raw 32-byte private key it keeps."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = node_dir / IDENTITY_FILE
    if not path.is_file():
        raise CliError(f"{node_dir} holds no node identity ({IDENTITY_FILE}); has it run?")
    data = path.read_bytes()
    if len(data) != 32:
        raise CliError(f"{path}: expected a raw 32-byte Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(data).public_key().public_bytes_raw()


def one_node(w: Where) -> Node:
    if w.node_dir is not None and w.node_key is not None:
        raise CliError("give --node-dir or --node-key, not both")
    if w.node_dir is not None:
        key = _node_public_key(w.node_dir)
        key_file = w.key_file or w.node_dir / WALLET_FILE
        return Node(w.node_dir.name, key_file, key)
    if w.node_key is None or w.key_file is None:
        raise CliError(
            "name the node: --node-dir DIR, or --key-file (its wallet) and --node-key HEX"
        )
    try:
        key = bytes.fromhex(w.node_key.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CliError("--node-key: expected 64 hex digits (a 32-byte Ed25519 public key)")
    return Node("node", w.key_file, key)


def up_nodes(w: Where) -> list[Node]:
    """The proxies and workers of the `cocoon up` network in --data-dir that have an
    identity and a wallet, in order (proxy1, proxy2, …, worker1, worker2, …)."""
    found = []
    for d in w.data_dir.iterdir() if w.data_dir.is_dir() else []:
        m = STAKING_NODE.fullmatch(d.name)
        if m and (d / IDENTITY_FILE).is_file() and (d / WALLET_FILE).is_file():
            found.append(((m.group(1), int(m.group(2) or 0)), d))
    return [Node(d.name, d / WALLET_FILE, _node_public_key(d)) for _, d in sorted(found)]


async def open_node_wallet(client: TonCenterClient, key_file: Path, version: str) -> Wallet:
    """The node's wallet: its key file opened as ``version`` (v4r2, v5r1)."""
    from ..chain.wallet import open_wallet

    return await open_wallet(client, load_key(key_file), version)


@dataclass(frozen=True)
class Network:
    """The stakes' root and network id, resolved."""

    root: str
    network_id: int
    unbond_delay: int | None  # the root's unbonding delay, when it was read


async def read_network(client: TonCenterClient, w: Where, *, need_delay: bool = False) -> Network:
    """The root and network id; the root is read only for what was not given."""
    from ..chain.root import read_root

    root = root_for(w)
    if w.network_id is not None and not need_delay:
        return Network(root, w.network_id, None)
    cfg = await read_root(client, root)
    network_id = cfg.network_id if w.network_id is None else w.network_id
    return Network(root, network_id, cfg.params.unbonding_delay)
