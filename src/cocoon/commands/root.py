"""`cocoon root`: the network operator's hands on the root contract.

Deploy a root, show everything it holds, and change it (owner only): params, the
allowed proxy images, worker images and models, the registered proxies, the owner, the
verifiers and slashing terms. Verdicts and slash cancellations: :mod:`.root_slash`.
Every change is one owner update sent from the key file's wallet; the command returns
once the root's version has moved, or says why the root refused (its exit code). The
options and where their defaults come from: :mod:`.root_args`; reading, updating and
showing the root's state: :mod:`.root_state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    ApiKeyOpt,
    CliError,
    JsonOpt,
    WalletVersionOpt,
    chain_endpoint,
    emit,
    fail,
    format_ton,
    load_key,
    or_fail,
    parse_address,
    parse_ton,
    run,
    with_options,
)
from .root_args import (
    TON_PARAMS,
    ChainEndpointOpt,
    EndpointOpt,
    KeyFileOpt,
    ParamFlags,
    RootOpt,
    RootTarget,
    owner_key_file,
    param_changes,
    parse_endpoint,
    parse_hash,
    parse_node_key,
    with_changes,
)
from .root_state import read_root, state_json, update_root

if TYPE_CHECKING:
    from ..chain.root import RootState
    from ..chain.toncenter import TonCenterClient

app = typer.Typer(
    help="The network's root contract: deploy, show, and change it (owner only).",
    no_args_is_help=True,
)

# -- commands ---------------------------------------------------------------------------


@app.command()
@with_options(ParamFlags)
def deploy(
    *,
    network_id: Annotated[int, typer.Option(help="The network's id (vouchers carry it).")],
    key_file: KeyFileOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    amount: Annotated[str, typer.Option(help="TON sent along for storage.")] = "1",
    flags: ParamFlags,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a root owned by the key file's wallet, from it; print its address.
    Params not given take their defaults."""
    from ..chain.channel import raw_address
    from ..chain.root import RootParams, deploy_root_from_wallet, read_root_state, root_init
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import open_wallet

    async def main() -> None:
        params = with_changes(RootParams(), param_changes(flags))
        nano = parse_ton(amount)
        key = load_key(owner_key_file(key_file))
        async with TonCenterClient(chain_endpoint(endpoint), api_key) as client:
            wallet = await open_wallet(client, key, wallet_version)
            root = raw_address(root_init(wallet.address, network_id, params)[2])
            existed = (await client.get_address_information(root)).active
            if not existed:
                await _check_funds(client, wallet.raw_address, nano)
                await deploy_root_from_wallet(wallet, network_id, params, amount=nano)
            state = await read_root_state(client, root)
        said = "already deployed" if existed else "deployed"
        emit(
            as_json,
            state_json(root, state) | {"deployed": not existed},
            [f"root: {root} ({said}, owner {state.owner}, network id {state.network_id})"],
        )

    run(main)


# A deploy costs the amount sent plus the wallet's and the message's fees (well below this).
_DEPLOY_FEES = 100_000_000


async def _check_funds(client: TonCenterClient, wallet: str, amount: int) -> None:
    balance = await client.get_balance(wallet)
    if balance < amount + _DEPLOY_FEES:
        raise CliError(
            f"the owner wallet {wallet} has {format_ton(balance)} TON; deploying needs"
            f" {format_ton(amount + _DEPLOY_FEES)} TON (fund it, e.g. cocoon wallet faucet)"
        )


@app.command()
def show(
    root: RootOpt = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Everything the root holds: version, owner, params, the allowed hashes, the proxies."""
    read_root(RootTarget(root=root, endpoint=endpoint, api_key=api_key), as_json)


@app.command("set-params")
@with_options(ParamFlags, RootTarget)
def set_params(flags: ParamFlags, target: RootTarget, as_json: JsonOpt = False) -> None:
    """Change the params given as flags; the others keep their current values."""
    from ..chain.root import set_params_body

    changes = or_fail(param_changes, flags)
    if not changes:
        fail("give at least one param to change (see cocoon root set-params --help)")

    def body(state: RootState, qid: int) -> Any:
        return set_params_body(with_changes(state.params, changes), qid)

    def said(_: RootState) -> str:
        shown = (f"{format_ton(v)} TON" if k in TON_PARAMS else str(v) for k, v in changes.items())
        return "set " + ", ".join(f"{k}={v}" for k, v in zip(changes, shown, strict=True))

    update_root(target, as_json, body, said)


KindArg = Annotated[str, typer.Argument(help="proxy-image, worker-image or model.")]
HashArg = Annotated[
    str,
    typer.Argument(metavar="HASH", help="64 hex digits; a model also as name@sha256:<hex>."),
]


def _set_hash(kind: str, hash_text: str, allowed: bool, target: RootTarget, as_json: bool) -> None:
    from ..chain.root import set_hash_body

    kind_no, hex_ = or_fail(parse_hash, kind, hash_text)
    verb = "allowed" if allowed else "disallowed"
    update_root(
        target,
        as_json,
        lambda _s, qid: set_hash_body(kind_no, hex_, allowed, qid),
        lambda _s: f"{verb} {kind} {hex_}",
    )


@app.command()
@with_options(RootTarget)
def allow(kind: KindArg, hash_: HashArg, target: RootTarget, as_json: JsonOpt = False) -> None:
    """Add a hash to the root's list of KIND."""
    _set_hash(kind, hash_, True, target, as_json)


@app.command()
@with_options(RootTarget)
def disallow(kind: KindArg, hash_: HashArg, target: RootTarget, as_json: JsonOpt = False) -> None:
    """Remove a hash from the root's list of KIND."""
    _set_hash(kind, hash_, False, target, as_json)


WalletArg = Annotated[str, typer.Argument(metavar="WALLET", help="The proxy's wallet address.")]


@app.command("add-proxy")
def add_proxy(
    wallet: WalletArg,
    endpoint_: Annotated[
        str, typer.Option("--endpoint", help="Where the proxy serves, host:port.")
    ],
    node_key: Annotated[
        str, typer.Option(help="The proxy node's Ed25519 public key, 64 hex digits.")
    ],
    root: RootOpt = None,
    key_file: KeyFileOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    chain: ChainEndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register (or replace) a proxy: its wallet, endpoint and node key."""
    from ..chain.root import RegisteredProxy, set_proxy_body

    raw = or_fail(parse_address, wallet, "wallet")
    entry = RegisteredProxy(
        raw, or_fail(parse_endpoint, endpoint_), or_fail(parse_node_key, node_key)
    )
    # Here --endpoint is the proxy's: the chain's is --chain-endpoint.
    target = RootTarget(root, key_file, wallet_version, chain, api_key)
    update_root(
        target,
        as_json,
        lambda _s, qid: set_proxy_body(raw, entry, qid),
        lambda _s: f"registered proxy {raw} at {entry.endpoint}",
    )


@app.command("remove-proxy")
@with_options(RootTarget)
def remove_proxy(wallet: WalletArg, target: RootTarget, as_json: JsonOpt = False) -> None:
    """Unregister a proxy."""
    from ..chain.root import set_proxy_body

    raw = or_fail(parse_address, wallet, "wallet")
    update_root(
        target,
        as_json,
        lambda _s, qid: set_proxy_body(raw, None, qid),
        lambda _s: f"removed proxy {raw}",
    )


@app.command("set-owner")
@with_options(RootTarget)
def set_owner(
    new_owner: Annotated[str, typer.Argument(metavar="ADDR", help="The new owner's address.")],
    target: RootTarget,
    as_json: JsonOpt = False,
) -> None:
    """Hand the root over to ADDR (from then on only ADDR's key can change it)."""
    from ..chain.root import set_owner_body

    raw = or_fail(parse_address, new_owner, "new owner")
    update_root(
        target,
        as_json,
        lambda _s, qid: set_owner_body(raw, qid),
        lambda s: f"owner is now {s.owner}",
    )


# -- verifiers and slashing (cocoon.commands.root_slash) --------------------------------

from .root_slash import (  # noqa: E402  (they join this app)
    add_verifier,
    cancel_slash,
    remove_verifier,
    set_slashing,
    submit_verdicts,
)

app.command("add-verifier")(add_verifier)
app.command("remove-verifier")(remove_verifier)
app.command("set-slashing")(set_slashing)
app.command("submit-verdicts")(submit_verdicts)
app.command("cancel-slash")(cancel_slash)
