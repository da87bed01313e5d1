"""`cocoon model`: model identities."""

from __future__ import annotations

import typer

app = typer.Typer(help="Model identities (name@sha256:<merkle root>).", no_args_is_help=True)
