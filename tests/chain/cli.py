"""Running `cocoon` in a chain test: off the test's event loop, without the caller's
own root and chain settings; what it printed, or its one error line."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner, Result

from cocoon.cli import app


async def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """`cocoon ARGS` with ``env`` on top of the caller's environment, less its
    ``COCOON_ROOT`` and ``COCOON_CHAIN_ENDPOINT``."""
    clean: dict[str, str | None] = {"COCOON_ROOT": None, "COCOON_CHAIN_ENDPOINT": None}
    # The commands run their own event loop: run them off this one.
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env={**clean, **(env or {})}
    )


def ok(r: Result) -> str:
    """A success: exit 0; its stdout."""
    assert r.exit_code == 0, (r.exit_code, r.output, r.exception)
    return r.stdout


def error_line(r: Result) -> str:
    """A refusal: exit 1 and exactly one line, no traceback."""
    assert r.exit_code == 1, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]
