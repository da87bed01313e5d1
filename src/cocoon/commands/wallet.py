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

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import msgspec
import typer

app = typer.Typer(
    help="TON wallets and payment channels: keys, balances, deposit, top-up, close, withdraw.",
    no_args_is_help=True,
)

T = TypeVar("T")
TON = 1_000_000_000
DEFAULT_ENDPOINT = "http://127.0.0.1:8081/api/v2/"
ENDPOINT_ENV = "COCOON_CHAIN_ENDPOINT"


class WalletCliError(Exception):
    """What the user asked cannot be done; the message is the one line the CLI prints."""


KeyFileOpt = Annotated[Path, typer.Option("--key-file", help="Wallet key file (mnemonic).")]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        help=f"toncenter v2 endpoint (default: ${ENDPOINT_ENV}, else the chain of a"
        f" `cocoon up` running here, else {DEFAULT_ENDPOINT}).",
    ),
]
ApiKeyOpt = Annotated[str | None, typer.Option(help="toncenter API key.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
PayeeOpt = Annotated[str, typer.Option(help="The channel's payee (its wallet address).")]
ChannelIdOpt = Annotated[int, typer.Option(min=0, help="Channel id (several per payee).")]
NetworkOpt = Annotated[
    int | None, typer.Option(help="Network id (default: the root's, with --root).")
]
CloseDelayOpt = Annotated[
    int | None,
    typer.Option(min=0, help="Close delay in seconds (default: the root's client delay)."),
]
RootOpt = Annotated[
    str | None, typer.Option(help="Root contract: where --network and --close-delay come from.")
]
AmountOpt = Annotated[str, typer.Option(help="Amount in TON, e.g. 1.5 (at most 9 decimals).")]
WalletVersionOpt = Annotated[
    Literal["v4r2", "v5r1"],
    typer.Option(
        "--wallet-version",
        help="Wallet contract of the key: each version is another address. v5r1's also"
        " depends on the network, asked of the endpoint.",
    ),
]


# -- parsing ----------------------------------------------------------------------------

_TON_AMOUNT = re.compile(r"(\d+)(?:\.(\d+))?")


def parse_ton(text: str) -> int:
    """``"1.5"`` → 1_500_000_000 nanotons, exactly (no floats); refuses what is not a
    non-negative decimal with at most 9 decimals."""
    m = _TON_AMOUNT.fullmatch(text.strip())
    if m is None:
        raise WalletCliError(f"amount {text!r}: expected TON as a decimal number, e.g. 1.5")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > 9:
        raise WalletCliError(f"amount {text!r}: at most 9 decimals (1 nanoton = 0.000000001 TON)")
    return int(whole) * TON + int(frac.ljust(9, "0"))


def _amount(text: str) -> int:
    try:
        return parse_ton(text)
    except WalletCliError as exc:
        _fail(str(exc))


def format_ton(nano: int) -> str:
    """Nanotons as TON, exactly (trailing zeros dropped)."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), TON)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return sign + text


def _address(text: str, what: str) -> str:
    from pytoniq_core.boc import Address
    from pytoniq_core.boc.address import AddressError

    try:
        return str(Address(text.strip()).to_str(is_user_friendly=False))
    # pytoniq raises AddressError, and IndexError/ValueError on some malformed strings.
    except (AddressError, IndexError, ValueError):
        raise WalletCliError(f"{what} {text!r} is not a TON address") from None


def _friendly(raw: str, *, bounceable: bool) -> str:
    from pytoniq_core.boc import Address

    return str(Address(raw).to_str(is_user_friendly=True, is_bounceable=bounceable))


# While `cocoon up` runs in this folder, its local chain is found here.
UP_CHAIN_READY = Path(".cocoon") / "run" / "chain.ready"


def endpoint_of(endpoint: str | None) -> str:
    """--endpoint, else $COCOON_CHAIN_ENDPOINT, else the chain of a `cocoon up` running
    from this folder, else the default port of `cocoon chain`."""
    if endpoint or os.environ.get(ENDPOINT_ENV):
        return endpoint or os.environ[ENDPOINT_ENV]
    try:
        return str(json.loads(UP_CHAIN_READY.read_text())["endpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_ENDPOINT


# -- running ----------------------------------------------------------------------------


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run one command; what a user can fix becomes one line on stderr and exit 1."""
    from ..chain.ops import ChannelOpsError
    from ..chain.root import RootError
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
    except (WalletError, ChannelOpsError, RootError) as exc:
        _fail(str(exc))
    except OSError as exc:
        name = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{name}{exc.strerror or exc}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"cocoon: error: {message}", err=True)
    raise typer.Exit(1)


def _emit(as_json: bool, obj: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        typer.echo(msgspec.json.encode(obj).decode())
    else:
        for line in lines:
            typer.echo(line)


def _load_key(key_file: Path) -> Any:
    from ..chain.wallet import WalletError, load_key_file

    if not key_file.is_file():
        raise WalletCliError(f"key file {key_file} does not exist (create one: cocoon wallet new)")
    try:
        return load_key_file(key_file)
    except (WalletError, ValueError, UnicodeDecodeError) as exc:
        raise WalletCliError(f"key file {key_file}: {exc}") from None


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
        _fail(f"{key_file} already exists; not overwriting a key")
    words = new_mnemonic()

    async def address() -> str:
        # v4r2 needs no chain; v5r1 asks the endpoint for its network, before the key is
        # saved, so that a chain that cannot answer leaves no key file behind.
        async with TonCenterClient(endpoint_of(endpoint), api_key) as client:
            return (await open_wallet(client, key_from_mnemonic(words), wallet_version)).raw_address

    raw = _run(address)
    try:
        save_key_file(key_file, words)
    except OSError as exc:
        _fail(f"{key_file}: {exc.strerror or exc}")
    _emit(
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
        key = _load_key(key_file)
        async with TonCenterClient(endpoint_of(endpoint), api_key) as client:
            wallet = await open_wallet(client, key, wallet_version)
            info = await client.get_address_information(wallet.raw_address)
        raw = wallet.raw_address
        _emit(
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

    _run(main)


@app.command()
def faucet(
    address: Annotated[str, typer.Option(help="Who receives the funds.")],
    amount: AmountOpt,
    endpoint: EndpointOpt = None,
) -> None:
    """Fund an address from the local chain's treasury (local chain only)."""
    from ..chain.local import LocalChainClient

    async def main() -> None:
        raw = _address(address, "address")
        nano = _amount(amount)
        client = LocalChainClient(endpoint_of(endpoint))
        try:
            await client.faucet(raw, nano)
            balance = await client.get_balance(raw)
        finally:
            await client.close()
        typer.echo(f"sent {format_ton(nano)} TON to {raw}; balance {format_ton(balance)} TON")

    _run(main)


# -- channels ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChannelArgs:
    key_file: Path
    payee: str
    channel_id: int
    network: int | None
    close_delay: int | None
    root: str | None
    endpoint: str | None
    api_key: str | None
    wallet_version: str = "v4r2"


async def _channel_ops(a: _ChannelArgs, client: Any) -> Any:
    from ..chain.channel import ChannelConfig
    from ..chain.ops import ChannelOps
    from ..chain.root import read_root
    from ..chain.wallet import open_wallet

    key = _load_key(a.key_file)
    payee = _address(a.payee, "payee")
    network, delay = a.network, a.close_delay
    if a.root is not None and (network is None or delay is None):
        cfg = await read_root(client, _address(a.root, "root"))
        network = cfg.network_id if network is None else network
        delay = cfg.params.client_close_delay if delay is None else delay
    if network is None or delay is None:
        raise WalletCliError("give --network and --close-delay, or --root to read them from")
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
        _emit(
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
    _emit(
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
    a: _ChannelArgs, as_json: bool, act: Callable[[Any], Awaitable[str | None]] | None
) -> None:
    from ..chain.toncenter import TonCenterClient

    async def main() -> None:
        async with TonCenterClient(endpoint_of(a.endpoint), a.api_key) as client:
            ops = await _channel_ops(a, client)
            if act is not None:
                done = await act(ops)
                if done and not as_json:
                    typer.echo(done)
            await _describe(ops, as_json)

    _run(main)


@app.command()
def channel(
    key_file: KeyFileOpt,
    payee: PayeeOpt,
    channel_id: ChannelIdOpt = 0,
    network: NetworkOpt = None,
    close_delay: CloseDelayOpt = None,
    root: RootOpt = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    as_json: JsonOpt = False,
) -> None:
    """The channel from this wallet to PAYEE: its address and state."""
    args = _ChannelArgs(
        key_file, payee, channel_id, network, close_delay, root, endpoint, api_key, wallet_version
    )
    _channel_command(args, as_json, None)


@app.command()
def deposit(
    key_file: KeyFileOpt,
    payee: PayeeOpt,
    amount: AmountOpt,
    channel_id: ChannelIdOpt = 0,
    network: NetworkOpt = None,
    close_delay: CloseDelayOpt = None,
    root: RootOpt = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    as_json: JsonOpt = False,
) -> None:
    """Deploy the channel with a first deposit, or top it up if it exists."""
    args = _ChannelArgs(
        key_file, payee, channel_id, network, close_delay, root, endpoint, api_key, wallet_version
    )
    nano = _amount(amount)

    async def act(ops: Any) -> str:
        if await ops.deploy(nano):
            return f"deployed with {format_ton(nano)} TON"
        await ops.top_up(nano)
        return f"topped up {format_ton(nano)} TON"

    _channel_command(args, as_json, act)


@app.command("top-up")
def top_up(
    key_file: KeyFileOpt,
    payee: PayeeOpt,
    amount: AmountOpt,
    channel_id: ChannelIdOpt = 0,
    network: NetworkOpt = None,
    close_delay: CloseDelayOpt = None,
    root: RootOpt = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    as_json: JsonOpt = False,
) -> None:
    """Add to the deposit of a deployed channel."""
    args = _ChannelArgs(
        key_file, payee, channel_id, network, close_delay, root, endpoint, api_key, wallet_version
    )
    nano = _amount(amount)

    async def act(ops: Any) -> str:
        await ops.top_up(nano)
        return f"topped up {format_ton(nano)} TON"

    _channel_command(args, as_json, act)


@app.command()
def close(
    key_file: KeyFileOpt,
    payee: PayeeOpt,
    channel_id: ChannelIdOpt = 0,
    network: NetworkOpt = None,
    close_delay: CloseDelayOpt = None,
    root: RootOpt = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    as_json: JsonOpt = False,
) -> None:
    """Start closing: after the close delay, withdraw; the payee may redeem until then."""
    args = _ChannelArgs(
        key_file, payee, channel_id, network, close_delay, root, endpoint, api_key, wallet_version
    )

    async def act(ops: Any) -> str:
        await ops.close()
        return "closing"

    _channel_command(args, as_json, act)


@app.command()
def withdraw(
    key_file: KeyFileOpt,
    payee: PayeeOpt,
    channel_id: ChannelIdOpt = 0,
    network: NetworkOpt = None,
    close_delay: CloseDelayOpt = None,
    root: RootOpt = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    wallet_version: WalletVersionOpt = "v4r2",
    as_json: JsonOpt = False,
) -> None:
    """After the close delay: what was not redeemed goes back to this wallet."""
    args = _ChannelArgs(
        key_file, payee, channel_id, network, close_delay, root, endpoint, api_key, wallet_version
    )

    async def act(ops: Any) -> str:
        st = await ops.state()
        await ops.withdraw()
        back = 0 if st is None else st.balance
        return f"withdrawn: about {format_ton(back)} TON back to this wallet (less fees)"

    _channel_command(args, as_json, act)
