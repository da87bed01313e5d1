"""`cocoon attest`: verify attestation evidence from the command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="Verify attestation evidence (TDX quotes).", no_args_is_help=True)
