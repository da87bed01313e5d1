"""`cocoon chain`: the local chain (@ton/sandbox behind the toncenter v2 API) in the foreground."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer


def chain(
    port: Annotated[int, typer.Option(help="Port of the toncenter v2 API (0: any).")] = 8081,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    data_dir: Annotated[
        Path, typer.Option(help="Where the chain's state lives (kept across restarts).")
    ] = Path(".cocoon/chain"),
    wall_clock: Annotated[
        bool,
        typer.Option(
            "--wall-clock/--manual-clock",
            help="The chain's clock follows wall time, or moves only on POST /dev/advance.",
        ),
    ] = True,
) -> None:
    """Run the local chain in the foreground and print its toncenter v2 endpoint."""
    from ..chain.local import LocalChain, LocalChainError

    async def main() -> int:
        lc = LocalChain(data_dir, port=port, host=host, wall_clock=wall_clock, inherit_stderr=True)
        ready = await lc.start()
        try:
            typer.echo(ready.endpoint)
            dev = ready.endpoint.removesuffix("api/v2/") + "dev/"
            typer.echo(
                f"cocoon: local chain on {ready.endpoint} (faucet {ready.faucet}, "
                f"state in {data_dir}); dev endpoints under {dev}",
                err=True,
            )
            return await lc.wait()
        finally:
            await lc.stop()

    try:
        code = asyncio.run(main())
    except LocalChainError as exc:
        typer.echo(f"cocoon: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
