"""`cocoon stake slash-equivocation` and `cocoon stake execute-slash`: slashing a stake
that is not one's own (:mod:`cocoon.chain.slashing`).

Anyone may send them, from any funded wallet (``--key-file``): an equivocation proof
(two receipts one worker signed for the same request and seq, with different bodies)
slashes at once and pays the sender a share; a verdict's slash, once its dispute
window has passed, is executed and pays whoever submitted the verdicts. The stake is
named by its address (``--stake``): a prover knows the worker's key from its receipts,
not the worker's wallet, so it cannot derive the address.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    UP_DATA_DIR,
    ApiKeyOpt,
    CliError,
    EndpointOpt,
    WalletVersionOpt,
    chain_endpoint,
    emit,
    format_ton,
    load_key,
    or_fail,
    parse_address,
    run,
    with_options,
)

if TYPE_CHECKING:
    from ..chain.slashing import SlashResult
    from ..chain.stake import StakeState

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]
ReceiptArg = Annotated[
    str,
    typer.Argument(
        help="A signed receipt (SignedReceipt msgpack): a file (raw, hex or base64), or"
        " hex or base64 on the command line."
    ),
]
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


@dataclass(frozen=True)
class Slasher:
    """The stake to slash and the wallet that sends (and is rewarded)."""

    stake: Annotated[str, typer.Option("--stake", help="The stake contract's address.")]
    key_file: Annotated[
        Path, typer.Option("--key-file", help="The sending wallet's key file (pays the fees).")
    ]
    wallet_version: WalletVersionOpt = "v4r2"
    endpoint: EndpointOpt = None
    api_key: ApiKeyOpt = None
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The folder of a `cocoon up` network.")
    ] = UP_DATA_DIR


def read_blob(text: str, what: str) -> bytes:
    """Bytes given as a file (raw, or hex / base64 text) or as hex / base64 text."""
    data = b""
    try:
        is_file = Path(text).is_file()
    except (OSError, ValueError):  # a long hex string is no file name
        is_file = False
    if is_file:
        data = Path(text).read_bytes()
        try:
            text = data.decode("ascii").strip()
        except UnicodeDecodeError:
            return data
    text = text.strip()
    if _HEX.fullmatch(text):
        return bytes.fromhex(text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    if is_file:
        return data
    raise CliError(f"{what} {text[:40]!r}: not a file, hex or base64")


def _result(r: SlashResult, st: StakeState, sender: str) -> tuple[dict[str, Any], list[str]]:
    obj = {
        "stake": r.stake,
        "slashed_nano": r.slashed_nano,
        "reward_nano": r.reward_nano,
        "sender": sender,
        "bonded_nano": st.bonded_nano,
        "unbonding_nano": st.unbonding_nano,
        "total_slashed_nano": st.slashed_nano,
    }
    lines = [
        f"slashed {format_ton(r.slashed_nano)} TON from stake {r.stake}"
        f" (reward {format_ton(r.reward_nano)} TON)",
        f"bonded: {format_ton(st.bonded_nano)} TON, unbonding:"
        f" {format_ton(st.unbonding_nano)} TON, slashed in all: {format_ton(st.slashed_nano)} TON",
    ]
    return obj, lines


def _slash(s: Slasher, as_json: bool, op: str, receipts: tuple[bytes, bytes] | None) -> None:
    from ..chain.slashing import execute_slash as execute
    from ..chain.slashing import submit_equivocation
    from ..chain.stake import read_stake
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import open_wallet
    from ..crypto.errors import CryptoError

    async def main() -> None:
        stake = parse_address(s.stake, "--stake")
        key = load_key(s.key_file)
        async with TonCenterClient(chain_endpoint(s.endpoint, s.data_dir), s.api_key) as client:
            wallet = await open_wallet(client, key, s.wallet_version)
            try:
                if receipts is None:
                    r = await execute(wallet, stake)
                else:
                    r = await submit_equivocation(wallet, stake, *receipts)
            except CryptoError as exc:
                raise CliError(f"{op}: {exc}") from None
            st = await read_stake(client, stake)
        obj, lines = _result(r, st, wallet.raw_address)
        emit(as_json, obj, lines)

    run(main, first_line_only=True, root_prefix="root: ")


@with_options(Slasher)
def slash_equivocation(
    receipt_a: ReceiptArg, receipt_b: ReceiptArg, s: Slasher, as_json: JsonOpt = False
) -> None:
    """Prove a worker signed two receipts for one request and seq: slash half its stake."""
    a = or_fail(read_blob, receipt_a, "RECEIPT_A")
    b = or_fail(read_blob, receipt_b, "RECEIPT_B")
    _slash(s, as_json, "slash-equivocation", (a, b))


@with_options(Slasher)
def execute_slash(s: Slasher, as_json: JsonOpt = False) -> None:
    """Execute the stake's pending slash once its dispute window has passed (anyone may)."""
    _slash(s, as_json, "execute-slash", None)
