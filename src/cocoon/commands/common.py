"""What the chain commands (`cocoon wallet`, `cocoon stake`, `cocoon root`) share.

Their common options; TON amounts, addresses and key files as a user types them; where
the chain is when no endpoint is given; and running a command so that what a user can
fix is one line on stderr and exit 1 (:class:`CliError` is how a command says so).

Typer has no groups of options: :func:`with_options` lets several commands take one
dataclass of options (the channel, the stake, the root they act on) instead of each
repeating its list.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    NoReturn,
    ParamSpec,
    TypeVar,
    get_type_hints,
)

import msgspec
import typer

if TYPE_CHECKING:  # imported when used: `cocoon --help` stays fast
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

T = TypeVar("T")
P = ParamSpec("P")

TON = 1_000_000_000
DEFAULT_ENDPOINT = "http://127.0.0.1:8081/api/v2/"
ENDPOINT_ENV = "COCOON_CHAIN_ENDPOINT"
# The folder of a `cocoon up` running here: while it runs, run/ says where its chain is.
UP_DATA_DIR = Path(".cocoon")


class CliError(Exception):
    """What the user asked cannot be done; the message is the one line the CLI prints."""


ApiKeyOpt = Annotated[str | None, typer.Option(help="toncenter API key.")]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        help=f"toncenter v2 endpoint (default: ${ENDPOINT_ENV}, else the chain of a"
        f" `cocoon up` running here, else {DEFAULT_ENDPOINT}).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
WalletVersionOpt = Annotated[
    Literal["v4r2", "v5r1"],
    typer.Option(
        "--wallet-version",
        help="Wallet contract of the key: each version is another address. v5r1's also"
        " depends on the network, asked of the endpoint.",
    ),
]


# -- what the user types ----------------------------------------------------------------

_TON_AMOUNT = re.compile(r"(\d+)(?:\.(\d+))?")


def parse_ton(text: str) -> int:
    """``"1.5"`` → 1_500_000_000 nanotons, exactly (no floats); refuses what is not a
    non-negative decimal with at most 9 decimals."""
    m = _TON_AMOUNT.fullmatch(text.strip())
    if m is None:
        raise CliError(f"amount {text!r}: expected TON as a decimal number, e.g. 1.5")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > 9:
        raise CliError(f"amount {text!r}: at most 9 decimals (1 nanoton = 0.000000001 TON)")
    return int(whole) * TON + int(frac.ljust(9, "0"))


def format_ton(nano: int) -> str:
    """Nanotons as TON, exactly (trailing zeros dropped)."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), TON)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return sign + text


def parse_address(text: str, what: str) -> str:
    """A TON address in any form, as raw ``0:<hex>``; ``what`` names it in the refusal."""
    from pytoniq_core.boc import Address
    from pytoniq_core.boc.address import AddressError

    try:
        return str(Address(text.strip()).to_str(is_user_friendly=False))
    # pytoniq raises AddressError, and IndexError/ValueError on some malformed strings.
    except (AddressError, IndexError, ValueError):
        raise CliError(f"{what} {text!r} is not a TON address") from None


def load_key(key_file: Path) -> Ed25519PrivateKey:
    """The wallet key of a key file (a mnemonic, as ``cocoon wallet new`` writes it)."""
    from ..chain.wallet import WalletError, load_key_file

    if not key_file.is_file():
        raise CliError(f"key file {key_file} does not exist (create one: cocoon wallet new)")
    try:
        return load_key_file(key_file)
    except (WalletError, ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"key file {key_file}: {exc}") from None


# -- where the chain is -----------------------------------------------------------------


def up_file(data_dir: Path, name: str) -> dict[str, Any] | None:
    """A JSON file `cocoon up` keeps in its run folder while it runs, or None."""
    try:
        obj = json.loads((data_dir / "run" / name).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def chain_endpoint(endpoint: str | None, data_dir: Path = UP_DATA_DIR) -> str:
    """--endpoint, else $COCOON_CHAIN_ENDPOINT, else the chain of a `cocoon up` running
    from ``data_dir`` (its root's file, else its chain's), else the default port of
    `cocoon chain`."""
    if endpoint or os.environ.get(ENDPOINT_ENV):
        return endpoint or os.environ[ENDPOINT_ENV]
    for name in ("root.json", "chain.ready"):
        up = up_file(data_dir, name)
        if up is not None and isinstance(up.get("endpoint"), str):
            return str(up["endpoint"])
    return DEFAULT_ENDPOINT


# -- running ----------------------------------------------------------------------------


def fail(message: str, *, first_line_only: bool = False) -> NoReturn:
    """End the command: ``message`` on stderr, exit 1."""
    if first_line_only:
        message = message.strip().splitlines()[0] if message.strip() else "failed"
    typer.echo(f"cocoon: error: {message}", err=True)
    raise typer.Exit(1)


def or_fail(parse: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``parse(*args, **kwargs)``; a :class:`CliError` it raises ends the command."""
    try:
        return parse(*args, **kwargs)
    except CliError as exc:
        fail(str(exc))


def run(
    make: Callable[[], Awaitable[T]], *, first_line_only: bool = False, root_prefix: str = ""
) -> T:
    """Run one command; what a user can fix becomes one line on stderr and exit 1.

    ``first_line_only``: print only the first line of a message (a chain's refusal may
    append its emulator's log below the reason). ``root_prefix`` goes before a root
    error, where the command is not about the root itself."""
    from ..chain.ops import ChannelOpsError
    from ..chain.root import RootError
    from ..chain.stake import StakeError
    from ..chain.toncenter import ChainError
    from ..chain.wallet import WalletError

    async def main() -> T:
        return await make()

    def fail_with(message: str) -> NoReturn:
        fail(message, first_line_only=first_line_only)

    try:
        return asyncio.run(main())
    except CliError as exc:
        fail_with(str(exc))
    except ChainError as exc:
        fail_with(f"chain: {exc}")
    except RootError as exc:
        fail_with(f"{root_prefix}{exc}")
    except (WalletError, ChannelOpsError, StakeError) as exc:
        fail_with(str(exc))
    except OSError as exc:
        name = f"{exc.filename}: " if exc.filename else ""
        fail_with(f"{name}{exc.strerror or exc}")


def emit(as_json: bool, obj: object, lines: list[str]) -> None:
    """``obj`` as JSON on stdout with --json, else ``lines``."""
    if as_json:
        typer.echo(msgspec.json.encode(obj).decode())
    else:
        for line in lines:
            typer.echo(line)


# -- groups of options ------------------------------------------------------------------


def with_options(*groups: type[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator, under ``@app.command()``: the command's parameter annotated with one
    of ``groups`` (a dataclass whose fields are typer options) becomes those options, in
    its place, and the command receives the dataclass built from them."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        hints = get_type_hints(command, include_extras=True)
        members: dict[str, tuple[type[Any], list[inspect.Parameter]]] = {}
        params: list[inspect.Parameter] = []
        for p in inspect.signature(command).parameters.values():
            group = hints[p.name]
            if group in groups:
                members[p.name] = (group, _options_of(group))
                params.extend(members[p.name][1])
            else:
                params.append(p.replace(kind=p.KEYWORD_ONLY, annotation=group))
        names = [p.name for p in params]
        if len(members) != len(groups) or len(set(names)) != len(names):
            raise TypeError(f"{command.__name__}: each group once, no option twice: {names}")

        @functools.wraps(command)
        def with_groups(**values: Any) -> None:
            for name, (group, options) in members.items():
                values[name] = group(**{o.name: values.pop(o.name) for o in options})
            command(**values)

        # Typer reads the options from the signature.
        with_groups.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        with_groups.__annotations__ = {p.name: p.annotation for p in params}
        return with_groups

    return decorate


def _options_of(group: type[Any]) -> list[inspect.Parameter]:
    hints = get_type_hints(group, include_extras=True)
    return [
        inspect.Parameter(p.name, p.KEYWORD_ONLY, default=p.default, annotation=hints[p.name])
        for p in inspect.signature(group).parameters.values()
    ]
