"""`cocoon attest`: verify attestation evidence from the command line.

`cocoon attest verify QUOTE --collateral FILE [--at UNIX_TIME] [--policy FILE] [--json]`
exits 0 and prints the TCB status and measurements when the quote is trusted
under the policy, and exits 1 with the precise reason otherwise. The policy
file is TOML with the fields of :class:`cocoon.tee.tdx_policy.TdxPolicy`
(``image_hashes``, ``tcb_statuses``, ``allowed_advisories``)
plus an optional ``report_data`` (hex) that REPORTDATA must equal.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from ..tee.errors import AttestationError
from ..tee.tdx_policy import TdxPolicy, check_tdx_quote, verdict_measurements

app = typer.Typer(help="Verify attestation evidence (TDX quotes).", no_args_is_help=True)


class PolicyFile(TdxPolicy, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A TDX policy as written in a file, with the report data a quote must carry."""

    report_data: str | None = None
    """Hex of the 64 bytes REPORTDATA must equal; absent: not checked."""


def _refuse(reason: str, message: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"trusted": False, "reason": reason, "message": message}))
    else:
        typer.echo(f"cocoon: refused ({reason}): {message}", err=True)
    raise typer.Exit(1)


def _read(path: Path, what: str, as_json: bool) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _refuse("unreadable", f"cannot read {what} {path}: {exc.strerror}", as_json)
    raise AssertionError("unreachable")


def _load_policy(path: Path | None, as_json: bool) -> tuple[TdxPolicy, bytes | None]:
    if path is None:
        return TdxPolicy(), None
    text = _read(path, "policy", as_json)
    try:
        data = tomllib.loads(text.decode())
        policy = msgspec.convert(data, PolicyFile)
        report_data = bytes.fromhex(policy.report_data) if policy.report_data else None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        _refuse("bad_policy", f"policy {path}: {exc}", as_json)
        raise AssertionError("unreachable") from None
    except ValueError as exc:
        _refuse("bad_policy", f"policy {path}: report_data is not hex: {exc}", as_json)
        raise AssertionError("unreachable") from None
    fields = {f.name: getattr(policy, f.name) for f in msgspec.structs.fields(TdxPolicy)}
    return TdxPolicy(**fields), report_data


@app.command()
def verify(
    quote: Annotated[Path, typer.Argument(help="Raw TDX quote (binary).")],
    collateral: Annotated[
        Path, typer.Option(help="Collateral JSON (dcap-qvl QuoteCollateralV3 form).")
    ],
    at: Annotated[
        int | None, typer.Option(help="Verify as of this unix time (default: now).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="TOML policy: image_hashes, tcb_statuses, ...")
    ] = None,
    root_ca: Annotated[
        Path | None,
        typer.Option(help="DER root CA instead of Intel's (simulated TDX only)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify a TDX quote against collateral and a policy; exit 1 with the reason if refused."""
    raw = _read(quote, "quote", as_json)
    collateral_bytes = _read(collateral, "collateral", as_json)
    root = _read(root_ca, "root CA", as_json) if root_ca is not None else None
    tdx_policy, report_data = _load_policy(policy, as_json)
    now = int(time.time()) if at is None else at
    try:
        result = check_tdx_quote(
            raw,
            collateral=collateral_bytes.decode("utf-8", errors="replace"),
            now=now,
            policy=tdx_policy,
            expected_report_data=report_data,
            root_ca_der=root,
        )
    except AttestationError as exc:
        _refuse(exc.reason, str(exc), as_json)
        return
    measurements = verdict_measurements(result)
    measurements["report_data"] = result.quote.report.report_data.hex()
    if as_json:
        typer.echo(json.dumps({"trusted": True, "status": result.status, **measurements}))
        return
    typer.echo(f"trusted: TDX quote v{result.quote.header.version}, TCB {result.status}")
    for name, value in measurements.items():
        typer.echo(f"  {name}: {value}")
