"""`cocoon up`: a whole local network (chain, root, proxies, workers, client) in one command.

The options and their checks live here; starting and supervising the nodes is
:mod:`cocoon.up`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str) -> None:
    """One line on stderr, exit 1: the CLI's error convention."""
    typer.echo(f"cocoon: error: {message}", err=True)
    raise typer.Exit(1)


def up(
    port: Annotated[int, typer.Option(help="Port of the OpenAI-compatible API.")] = 8080,
    host: Annotated[str, typer.Option(help="Address every node binds.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, max=64, help="Number of workers.")] = 2,
    upstream: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL to put behind the workers."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model name the workers serve (with --upstream or --engine synthetic)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help='Without --upstream: "llama" (the built-in engine, and the embeddings'
            ' model) or "synthetic" (canned text, starts at once).'
        ),
    ] = "llama",
    model_file: Annotated[
        str | None, typer.Option(help="A GGUF file for the llama engine (default: SmolLM2-135M).")
    ] = None,
    embeddings: Annotated[
        bool, typer.Option(help="Serve the embeddings model beside the llama engine.")
    ] = True,
    upstream_api_key: Annotated[str | None, typer.Option(help="Key for the upstream.")] = None,
    tokens_per_second: Annotated[
        float, typer.Option(help="Synthetic backend speed (0: unlimited).")
    ] = 0.0,
    first_token_delay_ms: Annotated[float, typer.Option(help="Synthetic first-token delay.")] = 0.0,
    api_key: Annotated[
        list[str] | None, typer.Option(help="Require this bearer key (repeatable).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Keys, ledgers and logs.")] = Path(".cocoon"),
    tee: Annotated[
        str,
        typer.Option(
            help='Attestation: "sim-tdx" (simulated TDX quotes, this build\'s image on the'
            ' local root), "sim-snp" (simulated SEV-SNP reports), a mix taken in turn by'
            ' proxies and workers ("sim-tdx,sim-snp"), or "none" (untrusted nodes).'
        ),
    ] = "sim-tdx",
    proxies: Annotated[
        int, typer.Option(min=1, max=16, help="Proxies, each registered on the local root.")
    ] = 2,
    payments: Annotated[
        bool,
        typer.Option(
            "--payments/--no-payments",
            help="Payment channels on a local chain (needs Node and the contracts' packages).",
        ),
    ] = True,
    dishonest: Annotated[
        int,
        typer.Option(
            min=0, help="Of the workers, this many lie (to try audits, reputation and slashing)."
        ),
    ] = 0,
    lie_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of answers a dishonest worker fakes.")
    ] = 0.5,
    dispute_delay: Annotated[
        int, typer.Option(min=0, help="Seconds a verdict's slash waits, cancellable, on the root.")
    ] = 60,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Start a whole local network and print its OpenAI base URL."""
    from ..children import UpError
    from ..up import run_up
    from ..up_options import UpOptions

    if upstream and not model:
        _fail("--upstream needs --model NAME (the model the upstream serves)")
    if engine not in ("llama", "synthetic"):
        _fail(f"--engine is llama or synthetic, not {engine!r}")
    if dishonest > workers:
        _fail(f"--dishonest {dishonest} is more than the {workers} workers")
    if model and not upstream and engine == "llama":
        _fail(
            "the llama engine serves the model of its file: use --model-file, or --engine synthetic"
        )
    options = UpOptions(
        port=port,
        host=host,
        workers=workers,
        data_dir=data_dir,
        upstream=upstream,
        model=model,
        upstream_api_key=upstream_api_key,
        tokens_per_second=tokens_per_second,
        first_token_delay_ms=first_token_delay_ms,
        api_keys=api_key or [],
        verbose=verbose,
        tee=tee,
        proxies=proxies,
        engine=engine,
        model_file=model_file,
        embeddings=embeddings,
        payments=payments,
        dishonest=dishonest,
        lie_rate=lie_rate,
        dispute_delay=dispute_delay,
    )
    try:
        code = run_up(options)
    except UpError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("cocoon: start interrupted; stopped what had started", err=True)
        raise typer.Exit(130) from None
    raise typer.Exit(code)
