"""`cocoon bench`: the full path measured against the direct upstream and LiteLLM."""

from __future__ import annotations

import typer

app = typer.Typer(help="Benchmarks.", invoke_without_command=True)
