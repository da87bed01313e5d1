"""`cocoon wallet`: a node's TON wallet and its payment channels, by hand.

Keys are key files (a 24-word mnemonic, as ``cocoon wallet new`` writes them), opened
as a v4r2 wallet or, with ``--wallet-version v5r1``, a v5r1 one (another address for the
same key; v5r1's depends on the network, asked of the endpoint); the
chain is any toncenter v2 endpoint (``COCOON_CHAIN_ENDPOINT``, default the local
chain of ``cocoon chain``). A channel is named by its payer (this wallet), payee,
channel id, network id and close delay, the way the nodes derive it; its payer key is
the wallet's key (which also signs vouchers). Amounts on the command line are TON as
decimal strings, converted exactly to nanotons.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    ApiKeyOpt,
    CliError,
    EndpointOpt,
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

app = typer.Typer(
    help="TON wallets and payment channels: keys, balances, deposit, top-up, close, withdraw.",
    no_args_is_help=True,
)

KeyFileOpt = Annotated[Path, typer.Option("--key-file", help="Wallet key file (mnemonic).")]
AmountOpt = Annotated[str, typer.Option(help="Amount in TON, e.g. 1.5 (at most 9 decimals).")]


def _friendly(raw: str, *, bounceable: bool) -> str:
    from pytoniq_core.boc import Address

    return str(Address(raw).to_str(is_user_friendly=True, is_bounceable=bounceable))


# -- wallet -----------------------------------------------------------------------------


@app.command()
def new(
    key_file: KeyFileOpt,
    wallet_version: WalletVersionOpt = "v4r2",
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a wallet key: a new 24-word mnemonic, saved readable by you only."""
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import key_from_mnemonic, new_mnemonic, open_wallet, save_key_file

    if key_file.exists():
        fail(f"{key_file} already exists; not overwriting a key")
    words = new_mnemonic()

    async def address() -> str:
        # v4r2 needs no chain; v5r1 asks the endpoint for its network, before the key is
        # saved, so that a chain that cannot answer leaves no key file behind.
        async with TonCenterClient(chain_endpoint(endpoint), api_key) as client:
            return (await open_wallet(client, key_from_mnemonic(words), wallet_version)).raw_address

    raw = run(address)
    try:
        save_key_file(key_file, words)
    except OSError as exc:
        fail(f"{key_file}: {exc.strerror or exc}")
    emit(
        as_json,
        {
            "key_file": str(key_file),
            "wallet_version": wallet_version,
            "address": raw,
            "friendly": _friendly(raw, bounceable=False),
        },
        [f"key file: {key_file}", f"wallet: {wallet_version}", *_address_lines(raw)],
    )


def _address_lines(raw: str) -> list[str]:
    return [f"address: {raw}", f"         {_friendly(raw, bounceable=False)}"]


@app.command()
def show(
    key_file: KeyFileOpt,
    wallet_version: WalletVersionOpt = "v4r2",
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The wallet's address, balance and whether it is deployed."""
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import open_wallet

    async def main() -> None:
        key = load_key(key_file)
        async with TonCenterClient(chain_endpoint(endpoint), api_key) as client:
            wallet = await open_wallet(client, key, wallet_version)
            info = await client.get_address_information(wallet.raw_address)
        raw = wallet.raw_address
        emit(
            as_json,
            {
                "wallet_version": wallet_version,
                "address": raw,
                "friendly": _friendly(raw, bounceable=False),
                "balance_nano": info.balance,
                "balance_ton": format_ton(info.balance),
                "deployed": info.active,
                "state": info.state,
            },
            [
                f"wallet: {wallet_version}",
                *_address_lines(raw),
                f"balance: {format_ton(info.balance)} TON ({info.balance} nanotons)",
                f"deployed: {'yes' if info.active else 'no (its first transfer deploys it)'}",
            ],
        )

    run(main)


@app.command()
def faucet(
    address: Annotated[str, typer.Option(help="Who receives the funds.")],
    amount: AmountOpt,
    endpoint: EndpointOpt = None,
) -> None:
    """Fund an address from the local chain's treasury (local chain only)."""
    from ..chain.local import LocalChainClient

    async def main() -> None:
        raw = parse_address(address, "address")
        nano = or_fail(parse_ton, amount)
        client = LocalChainClient(chain_endpoint(endpoint))
        try:
            await client.faucet(raw, nano)
            balance = await client.get_balance(raw)
        finally:
            await client.close()
        typer.echo(f"sent {format_ton(nano)} TON to {raw}; balance {format_ton(balance)} TON")

    run(main)


# -- channels ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelOptions:
    """The channel from this wallet a command is about: the options every channel
    command takes (unresolved; :func:`_channel_ops` resolves them)."""

    key_file: KeyFileOpt
    payee: Annotated[str, typer.Option(help="The channel's payee (its wallet address).")]
    channel_id: Annotated[int, typer.Option(min=0, help="Channel id (several per payee).")] = 0
    network: Annotated[
        int | None, typer.Option(help="Network id (default: the root's, with --root).")
    ] = None
    close_delay: Annotated[
        int | None,
        typer.Option(min=0, help="Close delay in seconds (default: the root's client delay)."),
    ] = None
    root: Annotated[
        str | None,
        typer.Option(help="Root contract: where --network and --close-delay come from."),
    ] = None
    endpoint: EndpointOpt = None
    api_key: ApiKeyOpt = None
    wallet_version: WalletVersionOpt = "v4r2"


async def _channel_ops(a: ChannelOptions, client: Any) -> Any:
    from ..chain.channel import ChannelConfig
    from ..chain.ops import ChannelOps
    from ..chain.root import read_root
    from ..chain.wallet import open_wallet

    key = load_key(a.key_file)
    payee = parse_address(a.payee, "payee")
    network, delay = a.network, a.close_delay
    if a.root is not None and (network is None or delay is None):
        cfg = await read_root(client, parse_address(a.root, "root"))
        network = cfg.network_id if network is None else network
        delay = cfg.params.client_close_delay if delay is None else delay
    if network is None or delay is None:
        raise CliError("give --network and --close-delay, or --root to read them from")
    wallet = await open_wallet(client, key, a.wallet_version)
    config = ChannelConfig(
        network_id=network,
        channel_id=a.channel_id,
        payer=wallet.address,
        payee=payee,
        payer_key=wallet.public_key,
        close_delay=delay,
    )
    return ChannelOps(client, wallet, config)


async def _describe(ops: Any, as_json: bool) -> None:
    st = await ops.state()
    if st is None:
        emit(
            as_json,
            {"channel": ops.address, "deployed": False},
            [f"channel: {ops.address}", "state: not deployed"],
        )
        return
    obj = {
        "channel": ops.address,
        "deployed": True,
        "deposit_nano": st.deposit,
        "redeemed_nano": st.redeemed,
        "unredeemed_nano": st.unredeemed,
        "seqno": st.seqno,
        "close_at": st.close_at,
        "close_delay": st.close_delay,
        "balance_nano": st.balance,
    }
    closing = f"closing, withdraw from unix time {st.close_at}" if st.close_at else "open"
    emit(
        as_json,
        obj,
        [
            f"channel: {ops.address}",
            f"deposit: {format_ton(st.deposit)} TON",
            f"redeemed: {format_ton(st.redeemed)} TON (voucher seqno {st.seqno})",
            f"unredeemed: {format_ton(st.unredeemed)} TON",
            f"balance: {format_ton(st.balance)} TON",
            f"state: {closing} (close delay {st.close_delay} s)",
        ],
    )


def _channel_command(
    a: ChannelOptions, as_json: bool, act: Callable[[Any], Awaitable[str | None]] | None
) -> None:
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        async with TonCenterClient(chain_endpoint(a.endpoint), a.api_key) as client:
            ops = await _channel_ops(a, client)
            if act is not None:
                done = await act(ops)
                if done and not as_json:
                    typer.echo(done)
            await _describe(ops, as_json)

    run(main)


@app.command()
@with_options(ChannelOptions)
def channel(ch: ChannelOptions, as_json: JsonOpt = False) -> None:
    """The channel from this wallet to PAYEE: its address and state."""
    _channel_command(ch, as_json, None)


@app.command()
@with_options(ChannelOptions)
def deposit(ch: ChannelOptions, amount: AmountOpt, as_json: JsonOpt = False) -> None:
    """Deploy the channel with a first deposit, or top it up if it exists."""
    nano = or_fail(parse_ton, amount)

    async def act(ops: Any) -> str:
        if await ops.deploy(nano):
            return f"deployed with {format_ton(nano)} TON"
        await ops.top_up(nano)
        return f"topped up {format_ton(nano)} TON"

    _channel_command(ch, as_json, act)


@app.command("top-up")
@with_options(ChannelOptions)
def top_up(ch: ChannelOptions, amount: AmountOpt, as_json: JsonOpt = False) -> None:
    """Add to the deposit of a deployed channel."""
    nano = or_fail(parse_ton, amount)

    async def act(ops: Any) -> str:
        await ops.top_up(nano)
        return f"topped up {format_ton(nano)} TON"

    _channel_command(ch, as_json, act)


@app.command()
@with_options(ChannelOptions)
def close(ch: ChannelOptions, as_json: JsonOpt = False) -> None:
    """Start closing: after the close delay, withdraw; the payee may redeem until then."""

    async def act(ops: Any) -> str:
        await ops.close()
        return "closing"

    _channel_command(ch, as_json, act)


@app.command()
@with_options(ChannelOptions)
def withdraw(ch: ChannelOptions, as_json: JsonOpt = False) -> None:
    """After the close delay: what was not redeemed goes back to this wallet."""

    async def act(ops: Any) -> str:
        st = await ops.state()
        await ops.withdraw()
        back = 0 if st is None else st.balance
        return f"withdrawn: about {format_ton(back)} TON back to this wallet (less fees)"

    _channel_command(ch, as_json, act)
