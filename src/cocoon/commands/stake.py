"""`cocoon stake`: a node's stake (the TON it locks before it serves), by hand.

A stake is named by the network id, its authority (the root contract), its owner (the
node's wallet) and the node's identity key, the way peers derive it
(:func:`cocoon.chain.stake.stake_address`); :mod:`.stake_args` says where each comes
from when not given. Inside a folder where ``cocoon up`` runs, ``cocoon stake show``
without a node lists every proxy's and worker's stake. Amounts are TON as decimal
strings, converted exactly to nanotons.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    CliError,
    chain_endpoint,
    emit,
    format_ton,
    or_fail,
    parse_ton,
    run,
    with_options,
)
from .stake_args import (
    JsonOpt,
    Network,
    Node,
    Where,
    one_node,
    open_node_wallet,
    read_network,
    up_nodes,
)

if TYPE_CHECKING:  # imported when used: `cocoon --help` stays fast
    from ..chain.slashing import StakeSlashing
    from ..chain.stake import StakeState
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import Wallet

app = typer.Typer(
    help="Node stakes: deposit, unbond, withdraw after the unbonding delay, show; slash"
    " (equivocation proofs, executing a verdict's slash).",
    no_args_is_help=True,
)

AmountArg = Annotated[str, typer.Argument(help="Amount in TON, e.g. 1.5 (at most 9 decimals).")]


def _run(make: Callable[[], Awaitable[None]]) -> None:
    # One line: a chain's refusal may append its emulator's log below the reason.
    run(make, first_line_only=True, root_prefix="root: ")


# -- describing -------------------------------------------------------------------------


def _utc(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def _pending_json(sl: StakeSlashing | None) -> dict[str, Any] | None:
    p = sl.pending if sl is not None else None
    if p is None:
        return None
    return {
        "bp": p.bp,
        "execute_at": p.execute_at,
        "nonce": p.nonce,
        "evidence": p.evidence.hex(),
        "beneficiary": p.beneficiary,
    }


async def read_slashing(client: TonCenterClient, address: str, st: StakeState) -> StakeSlashing:
    """The stake's pending slash and verdict nonce (none for a stake not deployed)."""
    from ..chain.slashing import StakeSlashing, read_stake_slashing

    if not st.active:
        return StakeSlashing(None, 0)
    return await read_stake_slashing(client, address)


def _record(
    name: str,
    address: str,
    owner: str,
    node_key: bytes,
    st: StakeState,
    sl: StakeSlashing | None = None,
) -> dict[str, Any]:
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
        "pending_slash": _pending_json(sl),
        "verdict_nonce": sl.verdict_nonce if sl is not None else 0,
    }


def _pending_line(p: dict[str, Any] | None) -> str:
    if p is None:
        return "pending slash: none"
    return (
        f"pending slash: {p['bp']} bp (verdict nonce {p['nonce']}), executable from"
        f" {_utc(p['execute_at'])} (unix {p['execute_at']}); reward to {p['beneficiary']}"
    )


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
        _pending_line(r["pending_slash"]),
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
        "pending slash",
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
            f"{r['pending_slash']['bp']} bp" if r["pending_slash"] else "-",
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
    network: Network
    node: Node


Act = Callable[[_Target], Awaitable[str]]


def _node_command(w: Where, as_json: bool, act: Act | None, *, need_delay: bool = False) -> None:
    """Resolve the node's stake, run ``act`` on it if any, then describe the stake."""
    from ..chain.stake import read_stake, stake_address
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        node = one_node(w)
        async with TonCenterClient(chain_endpoint(w.endpoint, w.data_dir), w.api_key) as client:
            wallet = await open_node_wallet(client, node.key_file, w.wallet_version)
            net = await read_network(client, w, need_delay=need_delay)
            address = stake_address(net.network_id, net.root, wallet.raw_address, node.node_key)
            if act is not None:
                done = await act(_Target(wallet, address, net, node))
                if not as_json:
                    typer.echo(done)
            st = await read_stake(client, address)
            sl = await read_slashing(client, address, st)
        r = _record(node.name, address, wallet.raw_address, node.node_key, st, sl)
        emit(as_json, r, _lines(r))

    _run(main)


def _list_command(w: Where, as_json: bool) -> None:
    """Every staking node of the `cocoon up` network in --data-dir, one row each."""
    from ..chain.stake import read_stake, stake_address
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        nodes = up_nodes(w)
        if not nodes:
            raise CliError(f"no proxy or worker with a wallet and an identity in {w.data_dir}")
        async with TonCenterClient(chain_endpoint(w.endpoint, w.data_dir), w.api_key) as client:
            net = await read_network(client, w)
            rows = []
            for node in nodes:
                owner = (
                    await open_node_wallet(client, node.key_file, w.wallet_version)
                ).raw_address
                address = stake_address(net.network_id, net.root, owner, node.node_key)
                st = await read_stake(client, address)
                sl = await read_slashing(client, address, st)
                rows.append(_record(node.name, address, owner, node.node_key, st, sl))
        emit(as_json, rows, _table(rows))

    _run(main)


@app.command()
@with_options(Where)
def show(w: Where, as_json: JsonOpt = False) -> None:
    """A node's stake; with no node named, where `cocoon up` runs: every node's stake."""
    if not w.names_a_node and (w.data_dir / "run" / "chain.ready").exists():
        _list_command(w, as_json)
    else:
        _node_command(w, as_json, None)


@app.command()
@with_options(Where)
def deposit(
    amount: AmountArg,
    w: Where,
    unbond_delay: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=366 * 24 * 3600,
            help="Seconds from an unbond request to its withdrawal (default: the root's"
            " unbonding delay, else 3600). Only ever raises the stake's delay.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bond AMOUNT more (the first deposit deploys the stake)."""
    from ..chain.stake import DEFAULT_UNBOND_DELAY, FEE_DEPOSIT, deposit_stake

    nano = or_fail(parse_ton, amount)

    async def act(t: _Target) -> str:
        balance = await t.wallet.balance()
        if balance < nano + FEE_DEPOSIT:
            raise CliError(
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
@with_options(Where)
def unbond(amount: AmountArg, w: Where, as_json: JsonOpt = False) -> None:
    """Start unbonding AMOUNT; a new request restarts the delay for all that is unbonding."""
    from ..chain.stake import request_unbond

    nano = or_fail(parse_ton, amount)

    async def act(t: _Target) -> str:
        await request_unbond(t.wallet, t.address, nano)
        return f"unbonding {format_ton(nano)} TON"

    _node_command(w, as_json, act)


@app.command()
@with_options(Where)
def withdraw(w: Where, as_json: JsonOpt = False) -> None:
    """Take back what has finished unbonding, to the node's wallet."""
    from ..chain.stake import StakeErr, StakeRefused, read_stake, withdraw_stake

    async def act(t: _Target) -> str:
        before = await read_stake(t.wallet.client, t.address)
        try:
            await withdraw_stake(t.wallet, t.address)
        except StakeRefused as exc:
            if exc.exit_code != StakeErr.TOO_EARLY:
                raise
            raise CliError(f"{exc}; withdrawable from {_utc(before.unlock_at)}") from None
        return f"withdrawn {format_ton(before.unbonding_nano)} TON"

    _node_command(w, as_json, act)


# -- slashing (cocoon.commands.stake_slash) ---------------------------------------------

from .stake_slash import execute_slash, slash_equivocation  # noqa: E402  (they join this app)

app.command("slash-equivocation")(slash_equivocation)
app.command("execute-slash")(execute_slash)
