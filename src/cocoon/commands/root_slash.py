"""`cocoon root` for slashing: the verifier list and slashing terms (owner updates),
submitting verdicts (anyone) and cancelling a disputed slash (owner).

A verdict is judged off chain by verifier workers, each of which signs it
(:func:`cocoon.crypto.verdict_cell.sign_verdict`, one msgpack file each);
``submit-verdicts`` sends a quorum of them to the root, which proposes the slash to the
worker's stake. It is pending for the root's dispute delay: ``cancel-slash`` (the
owner) upholds a dispute, ``cocoon stake execute-slash`` (anyone) carries it out after.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    CliError,
    JsonOpt,
    chain_endpoint,
    emit,
    load_key,
    or_fail,
    parse_address,
    run,
)
from .common import with_options as _with_options
from .root_args import RootTarget, owner_key_file, parse_node_key, root_of
from .root_state import update_root

if TYPE_CHECKING:
    from ..chain.slashing import PendingSlash

KeyArg = Annotated[
    str, typer.Argument(metavar="KEY", help="The verifier's node key, 64 hex digits.")
]


def _set_verifier(key_text: str, allowed: bool, target: RootTarget, as_json: bool) -> None:
    from ..chain.root import set_verifier_body

    key = or_fail(parse_node_key, key_text)
    verb = "listed" if allowed else "unlisted"
    update_root(
        target,
        as_json,
        lambda _s, qid: set_verifier_body(key, allowed, qid),
        lambda _s: f"{verb} verifier {key.hex()}",
    )


@_with_options(RootTarget)
def add_verifier(key: KeyArg, target: RootTarget, as_json: JsonOpt = False) -> None:
    """List a verifier's node key: its verdicts count toward the quorum."""
    _set_verifier(key, True, target, as_json)


@_with_options(RootTarget)
def remove_verifier(key: KeyArg, target: RootTarget, as_json: JsonOpt = False) -> None:
    """Unlist a verifier's node key."""
    _set_verifier(key, False, target, as_json)


@_with_options(RootTarget)
def set_slashing(
    target: RootTarget,
    dispute_delay: Annotated[
        int,
        typer.Option(min=0, help="Seconds a verdict's slash waits (at most the unbonding delay)."),
    ],
    quorum: Annotated[
        int, typer.Option(min=2, max=255, help="Verifier signatures a verdict needs.")
    ] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Set the dispute window and the verdict quorum."""
    from ..chain.root import set_slashing_body

    update_root(
        target,
        as_json,
        lambda _s, qid: set_slashing_body(dispute_delay, quorum, qid),
        lambda s: f"dispute delay {s.slashing.dispute_delay} s, quorum {s.slashing.quorum}",
    )


def _pending_json(stake: str, p: PendingSlash) -> dict[str, Any]:
    return {
        "stake": stake,
        "bp": p.bp,
        "execute_at": p.execute_at,
        "nonce": p.nonce,
        "evidence": p.evidence.hex(),
        "beneficiary": p.beneficiary,
    }


@_with_options(RootTarget)
def submit_verdicts(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE...", help="Signed verdicts, one msgpack file per verifier."),
    ],
    target: RootTarget,
    as_json: JsonOpt = False,
) -> None:
    """Submit verifiers' signatures of one verdict: the root proposes its slash to the stake."""
    from ..chain.slashing import submit_verdicts as submit
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import open_wallet
    from ..crypto.errors import CryptoError

    async def main() -> None:
        root = root_of(target.root)
        blobs = [f.read_bytes() for f in files]
        key = load_key(owner_key_file(target.key_file))
        async with TonCenterClient(chain_endpoint(target.endpoint), target.api_key) as client:
            wallet = await open_wallet(client, key, target.wallet_version)
            try:
                pending = await submit(wallet, root, blobs)
            except CryptoError as exc:
                raise CliError(f"submit-verdicts: {exc}") from None
        from ..crypto.verdict_cell import decode_signed_verdict

        stake = decode_signed_verdict(blobs[0]).verdict.stake
        obj = _pending_json(stake, pending)
        emit(
            as_json,
            obj,
            [
                f"pending slash of {pending.bp} bp on {stake} (verdict nonce {pending.nonce}),"
                f" executable from unix {pending.execute_at}"
            ],
        )

    run(main, first_line_only=True)


@_with_options(RootTarget)
def cancel_slash(
    stake: Annotated[str, typer.Argument(metavar="STAKE", help="The stake's address.")],
    nonce: Annotated[int, typer.Argument(min=0, help="The pending slash's verdict nonce.")],
    target: RootTarget,
    as_json: JsonOpt = False,
) -> None:
    """Uphold a dispute: cancel the slash pending on STAKE (owner, through the root)."""
    from ..chain.slashing import cancel_slash as cancel
    from ..chain.toncenter import TonCenterClient
    from ..chain.wallet import open_wallet

    raw = or_fail(parse_address, stake, "stake")

    async def main() -> None:
        root = root_of(target.root)
        key = load_key(owner_key_file(target.key_file))
        async with TonCenterClient(chain_endpoint(target.endpoint), target.api_key) as client:
            wallet = await open_wallet(client, key, target.wallet_version)
            await cancel(wallet, root, raw, nonce)
        emit(as_json, {"stake": raw, "cancelled": nonce}, [f"cancelled the slash pending on {raw}"])

    run(main, first_line_only=True)
