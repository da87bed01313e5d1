"""`cocoon verify FILE`: check an answer's evidence bundle offline.

The bundle is the file the web app's "what ran where" panel downloads (or
`GET /v1/evidence/{request_id}` returns). Exit 0 with what it proves, or exit 1
with the reason in one line (`--json`: one JSON object either way). Nothing is
fetched: the collateral travels in the bundle, the roots are this program's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..evidence.check import VerifiedAnswer, verify_bundle
from ..evidence.errors import BundleError
from .bounded_read import read_bounded

_KINDS = {"tdx": "TDX", "sev-snp": "SEV-SNP"}


def _format_ton(nano: int) -> str:
    whole, frac = divmod(nano, 1_000_000_000)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".")


def verify(
    file: Annotated[Path, typer.Argument(help="Evidence bundle (JSON) of one answer.")],
    at: Annotated[
        int | None,
        typer.Option(help="Check as of this unix time (default: when the answer was served)."),
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option(help="Require one of these image hashes (repeatable)."),
    ] = None,
    require_hardware: Annotated[
        bool,
        typer.Option(help="Refuse simulated TEEs: only a real TDX quote or SNP report passes."),
    ] = False,
    allow_untrusted: Annotated[
        bool, typer.Option(help="Accept a worker without attestation (provider none).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify an answer's evidence bundle offline: receipt, worker attestation, price."""
    try:
        data = read_bounded(file)
        answer = verify_bundle(
            data,
            at=at,
            allow_untrusted=allow_untrusted,
            require_hardware=require_hardware,
            images=image or (),
        )
    except OSError as exc:
        _refuse("unreadable", f"cannot read {file}: {exc.strerror or exc}", as_json)
        return
    except BundleError as exc:
        _refuse(exc.reason, str(exc), as_json)
        return
    summary = answer.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    amount = summary["amount_nano"]
    price = "" if amount is None else f" · {_format_ton(amount)} TON"
    typer.echo(
        f"verified: {summary['model']} answered by worker {summary['worker']}"
        f" · {_kind(answer)} · image {summary['image_hash'] or '-'} · TCB {_tcb(answer)}"
        f" · {summary['prompt_tokens']}+{summary['completion_tokens']} tokens{price}"
    )
    if summary["launch_measurement"]:
        typer.echo(f"launch measurement: {summary['launch_measurement']}")
    for warning in answer.warnings:
        typer.echo(f"warning: {warning}", err=True)


def _kind(answer: VerifiedAnswer) -> str:
    """ "SIMULATED TDX (not hardware)", "SEV-SNP Milan (hardware)", "none", ..."""
    summary = answer.summary()
    kind = _KINDS.get(summary["tee"])
    if kind is None:
        return str(summary["provider"])
    if summary["product"]:
        kind += f" {summary['product']}"
    return f"SIMULATED {kind} (not hardware)" if answer.simulated else f"{kind} (hardware)"


def _tcb(answer: VerifiedAnswer) -> str:
    levels = answer.tcb()
    if levels:
        return ", ".join(f"{name} {level}" for name, level in levels.items())
    return str(answer.summary()["tcb_status"] or "-")


def _refuse(reason: str, message: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"verified": False, "reason": reason, "message": message}))
    else:
        typer.echo(f"cocoon: refused ({reason}): {message}", err=True)
    raise typer.Exit(1)
