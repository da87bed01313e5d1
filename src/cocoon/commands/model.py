"""`cocoon model`: model identities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..tee.model_id import ModelIdError, model_id

app = typer.Typer(help="Model identities (name@sha256:<merkle root>).", no_args_is_help=True)


@app.command("hash")
def hash_(
    path: Annotated[Path, typer.Argument(help="Model directory (or a single model file).")],
    name: Annotated[str | None, typer.Option(help="Model name (default: base name).")] = None,
) -> None:
    """Print the model id name@sha256:<merkle root> (construction: cocoon.tee.model_id)."""
    try:
        typer.echo(model_id(path, name))
    except ModelIdError as exc:
        typer.echo(f"cocoon: error: {exc}", err=True)
        raise typer.Exit(1) from None
