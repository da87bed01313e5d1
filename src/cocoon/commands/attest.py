"""`cocoon attest`: verify attestation evidence from the command line.

`cocoon attest verify EVIDENCE [--collateral FILE | --vcek FILE [--chain FILE]
[--crl FILE]] [--at UNIX_TIME] [--policy FILE] [--json]`

The kind of evidence is read from the input: an Intel TDX quote (verified
against ``--collateral``) or an AMD SEV-SNP attestation report (verified with
the chip's ``--vcek`` and the ``--chain`` ASK then ARK, the ARK pinned to
AMD's published roots; without ``--chain`` the pinned ASK is used). Exits 0
and prints the measurements and TCB when the evidence is trusted under the
policy, and exits 1 with the precise reason otherwise (``malformed``,
``bad_signature``, ``chain_invalid``, ``report_data_mismatch``,
``debug_guest``, ``tcb_too_low``, ``measurement_not_allowed``, ...). The
policy file is TOML with the fields of
:class:`cocoon.tee.tdx_policy.TdxPolicy` for a quote or
:class:`cocoon.tee.snp_policy.SnpPolicy` for a report (``image_hashes`` is
common to both), plus an optional ``report_data`` (hex) the evidence must carry
and, for a report, ``allow_debug = true`` to accept a debug guest: for
inspecting test and development reports (such as AMD's published samples);
nodes themselves always refuse debug guests.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import msgspec
import typer

from ..tee.errors import AttestationError, PolicyError
from ..tee.snp_certs import Roots, load_chain
from ..tee.snp_policy import SnpPolicy, check_snp_report
from ..tee.snp_report import PRODUCTS, is_snp_report, parse_snp_report
from ..tee.snp_roots import amd_roots
from ..tee.tdx_policy import TdxPolicy, check_tdx_quote, verdict_measurements
from .bounded_read import read_bounded

app = typer.Typer(
    help="Verify attestation evidence (TDX quotes, SEV-SNP reports).", no_args_is_help=True
)

P = TypeVar("P", TdxPolicy, SnpPolicy)


class TdxPolicyFile(TdxPolicy, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A TDX policy as written in a file, with the report data a quote must carry."""

    report_data: str | None = None
    """Hex of the 64 bytes REPORTDATA must equal; absent: not checked."""


class SnpPolicyFile(SnpPolicy, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An SEV-SNP policy as written in a file, with the report data a report must carry."""

    report_data: str | None = None
    """Hex of the 64 bytes REPORT_DATA must equal; absent: not checked."""
    allow_debug: bool = False
    """Accept a debug guest (its host can read its memory): to inspect test reports."""


DEBUG_HINT = (
    "; to inspect it anyway, pass --policy FILE with allow_debug = true"
    " (nodes always refuse debug guests)"
)

PolicyFile = TdxPolicyFile  # the name this module had before SEV-SNP


def _refuse(reason: str, message: str, as_json: bool, **extra: object) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"trusted": False, "reason": reason, "message": message, **extra}))
    else:
        typer.echo(f"cocoon: refused ({reason}): {message}", err=True)
    raise typer.Exit(1)


def _read(path: Path, what: str, as_json: bool) -> bytes:
    try:
        return read_bounded(path)
    except OSError as exc:
        _refuse("unreadable", f"cannot read {what} {path}: {exc.strerror}", as_json)


def _load_policy(
    path: Path | None,
    base: type[P],
    file_type: type[TdxPolicyFile] | type[SnpPolicyFile],
    as_json: bool,
) -> tuple[P, bytes | None, Any]:
    """The policy of `path` (default: `base()`), its report data, and the file as read."""
    if path is None:
        return base(), None, None
    text = _read(path, "policy", as_json)
    try:
        data = tomllib.loads(text.decode())
        policy: Any = msgspec.convert(data, file_type)
        report_data = bytes.fromhex(policy.report_data) if policy.report_data else None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        _refuse("bad_policy", f"policy {path}: {exc}", as_json)
    except ValueError as exc:
        _refuse("bad_policy", f"policy {path}: report_data is not hex: {exc}", as_json)
    fields = {f.name: getattr(policy, f.name) for f in msgspec.structs.fields(base)}
    return base(**fields), report_data, policy


def _own_roots(root_ca: Path, chain: bytes, as_json: bool) -> Roots:
    """An ARK of our own (the simulated PKI's) pinned in place of AMD's, with the chain's ASK."""
    try:
        [ark] = load_chain(_read(root_ca, "root CA", as_json))
        ask = load_chain(chain)[0] if chain else None
    except (AttestationError, ValueError) as exc:
        _refuse("chain_invalid", f"--root-ca must be one ARK certificate: {exc}", as_json)
    product = ark.subject.rfc4514_string().partition("CN=ARK-")[2].partition(",")[0]
    if ask is None or product not in PRODUCTS:
        _refuse("chain_invalid", "--root-ca needs an ARK-<product> root and the --chain", as_json)
    return {product: (ask, ark)}


def _is_tdx_quote(data: bytes) -> bool:
    return len(data) >= 8 and data[0:2] in (b"\x04\x00", b"\x05\x00") and data[4] == 0x81


@app.command()
def verify(
    evidence: Annotated[
        Path, typer.Argument(help="A raw TDX quote or SEV-SNP attestation report (binary).")
    ],
    collateral: Annotated[
        Path | None, typer.Option(help="TDX: collateral JSON (dcap-qvl QuoteCollateralV3 form).")
    ] = None,
    vcek: Annotated[
        Path | None, typer.Option(help="SEV-SNP: the chip's VCEK certificate (DER).")
    ] = None,
    chain: Annotated[
        Path | None,
        typer.Option(help="SEV-SNP: ASK then ARK (PEM), as AMD serves them; default: pinned."),
    ] = None,
    crl: Annotated[
        Path | None, typer.Option(help="SEV-SNP: AMD's CRL for the product (DER or PEM).")
    ] = None,
    at: Annotated[
        int | None, typer.Option(help="Verify as of this unix time (default: now).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="TOML policy: image_hashes, tcb_statuses, min_tcb, ...")
    ] = None,
    root_ca: Annotated[
        Path | None,
        typer.Option(
            help="DER/PEM root instead of Intel's root CA or AMD's ARKs (simulated TEEs only)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify a TDX quote or an SEV-SNP report and a policy; exit 1 with the reason if refused."""
    raw = _read(evidence, "evidence", as_json)
    now = int(time.time()) if at is None else at
    if is_snp_report(raw):
        _verify_snp(raw, vcek, chain, crl, root_ca, policy, now, as_json)
    elif _is_tdx_quote(raw):
        _verify_tdx(raw, collateral, root_ca, policy, now, as_json)
    else:
        _refuse(
            "malformed",
            f"{evidence} is neither a TDX quote nor an SEV-SNP report ({len(raw)} bytes)",
            as_json,
        )


def _verify_tdx(
    raw: bytes,
    collateral: Path | None,
    root_ca: Path | None,
    policy: Path | None,
    now: int,
    as_json: bool,
) -> None:
    if collateral is None:
        _refuse("usage", "a TDX quote is verified against --collateral FILE", as_json)
    collateral_bytes = _read(collateral, "collateral", as_json)
    root = _read(root_ca, "root CA", as_json) if root_ca is not None else None
    tdx_policy, report_data, _ = _load_policy(policy, TdxPolicy, TdxPolicyFile, as_json)
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
        _refuse(exc.reason, str(exc), as_json, kind="tdx")
    measurements = verdict_measurements(result)
    measurements["report_data"] = result.quote.report.report_data.hex()
    if as_json:
        doc = {"trusted": True, "kind": "tdx", "status": result.status, **measurements}
        typer.echo(json.dumps(doc))
        return
    typer.echo(f"trusted: TDX quote v{result.quote.header.version}, TCB {result.status}")
    for name, value in measurements.items():
        typer.echo(f"  {name}: {value}")


def _verify_snp(
    raw: bytes,
    vcek: Path | None,
    chain: Path | None,
    crl: Path | None,
    root_ca: Path | None,
    policy: Path | None,
    now: int,
    as_json: bool,
) -> None:
    if vcek is None:
        _refuse(
            "usage", "an SEV-SNP report is verified with --vcek FILE (the chip's VCEK)", as_json
        )
    vcek_der = _read(vcek, "VCEK", as_json)
    chain_bytes = _read(chain, "chain", as_json) if chain is not None else b""
    crl_bytes = _read(crl, "CRL", as_json) if crl is not None else None
    snp_policy, report_data, as_read = _load_policy(policy, SnpPolicy, SnpPolicyFile, as_json)
    allow_debug = as_read is not None and as_read.allow_debug
    roots = amd_roots() if root_ca is None else _own_roots(root_ca, chain_bytes, as_json)
    try:
        result = check_snp_report(
            raw,
            vcek=vcek_der,
            chain=chain_bytes,
            now=now,
            policy=snp_policy,
            expected_report_data=report_data,
            roots=roots,
            crl=crl_bytes,
            allow_debug=allow_debug,
        )
    except PolicyError as exc:
        # Signature and chain held: what the report says is authentic, and shown.
        report = parse_snp_report(raw)
        _refuse(
            exc.reason,
            str(exc) + (DEBUG_HINT if exc.reason == "debug_guest" else ""),
            as_json,
            kind="sev-snp",
            measurement=report.measurement.hex(),
            reported_tcb=f"{report.reported_tcb:#018x}",
        )
    except AttestationError as exc:
        _refuse(exc.reason, str(exc), as_json, kind="sev-snp")
    measurements = result.measurements()
    measurements["report_data"] = result.report.report_data.hex()
    tcb = {k.removeprefix("tcb_"): int(v) for k, v in measurements.items() if k.startswith("tcb_")}
    debug = result.report.debug
    if as_json:
        doc = {"trusted": True, "kind": "sev-snp", "tcb": tcb, "debug_allowed": debug}
        typer.echo(json.dumps({**doc, **measurements}))
        return
    levels = ", ".join(f"{name} {level}" for name, level in tcb.items())
    typer.echo(f"trusted: SEV-SNP report v{result.report.version} ({result.product}), TCB {levels}")
    for name, value in measurements.items():
        typer.echo(f"  {name}: {value}")
    if debug:
        typer.echo(
            "warning: a debug guest (its host can read its memory), accepted only because"
            " the policy sets allow_debug",
            err=True,
        )
