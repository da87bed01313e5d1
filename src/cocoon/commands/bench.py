"""`cocoon bench`: the full path measured against the direct upstream, LiteLLM and any
running OpenAI-compatible endpoint (`--target NAME=URL`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks.", invoke_without_command=True)


def _levels(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter("a comma-separated list of integers, e.g. 1,16,64") from None
    if any(level < 1 for level in levels):
        raise typer.BadParameter("concurrency levels must be at least 1")
    return levels


@app.callback()
def bench(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option(help="Smoke check in under a minute: c=1 and 16, short runs.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default: results/bench-<timestamp>).")
    ] = None,
    targets: Annotated[
        str,
        typer.Option(
            help="Comma-separated: direct, cocoon, litellm, and cocoon-unpaid (Cocoon"
            " without payments, beside cocoon with --payments)."
        ),
    ] = "direct,cocoon,litellm",
    concurrency: Annotated[
        str | None, typer.Option(help="Concurrency levels, e.g. 1,16,64,256.")
    ] = None,
    modes: Annotated[
        str, typer.Option(help="Comma-separated: plain (non-streamed), stream.")
    ] = "plain,stream",
    max_seconds: Annotated[
        float | None, typer.Option(min=0.1, help="Measured seconds per load (after warm-up).")
    ] = None,
    max_requests: Annotated[
        int | None, typer.Option(min=1, help="Measured requests per load, at most.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Cocoon workers.")] = 2,
    tokens: Annotated[int, typer.Option(min=1, help="Completion tokens per answer.")] = 64,
    token_delay_ms: Annotated[
        float, typer.Option(min=0.0, help="Upstream delay between tokens (0: none).")
    ] = 0.0,
    engine: Annotated[
        str,
        typer.Option(
            help='"synthetic" (the in-project upstream) or "llama": the real engine, called'
            " directly (llama_cpp.server) and through Cocoon (the workers' built-in engine)."
        ),
    ] = "synthetic",
    model_file: Annotated[
        Path | None, typer.Option(help="GGUF file for --engine llama (default: SmolLM2-135M).")
    ] = None,
    payments: Annotated[
        bool,
        typer.Option(
            "--payments/--no-payments",
            help="Cocoon with payment channels on a local chain (a voucher per request).",
        ),
    ] = False,
    tiers: Annotated[
        str,
        typer.Option(
            help="Trust tiers to measure on Cocoon beside its default (tee), e.g."
            " audited,replicated: each is the target cocoon[<tier>]."
        ),
    ] = "",
    litellm_python: Annotated[
        str | None, typer.Option(help="A Python with litellm[proxy] installed, if not this one.")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=URL of a running OpenAI-compatible endpoint (URL ends in /v1) to"
            " measure beside the built-in targets in the same run; repeatable."
        ),
    ] = None,
    target_model: Annotated[
        str | None,
        typer.Option(help="The model to ask the --target endpoints for (default: the bench's)."),
    ] = None,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            max=50,
            help="Run every load on every target this many times, the targets' order"
            " turned each round; the report gives each round's ratios and their median.",
        ),
    ] = 1,
    pin: Annotated[
        bool,
        typer.Option(
            "--pin/--no-pin",
            help="The load generator on a CPU of its own, every server (a --target's found"
            " on this machine too) on the others; --no-pin: all where the OS puts them.",
        ),
    ] = True,
) -> None:
    """Measure the full Cocoon path against the direct upstream and LiteLLM's proxy.

    Writes report.json, report.md and report.png into the results folder.
    """
    if ctx.invoked_subcommand is not None:
        return  # another benchmark (e.g. `cocoon bench chain`)
    from ..bench.plan import Mode
    from ..bench.runner import TARGETS, BenchOptions, run_bench
    from ..bench.targets import parse_external

    try:
        external = tuple(parse_external(spec) for spec in target or [])
    except ValueError as exc:
        typer.echo(f"cocoon: error: {exc}", err=True)
        raise typer.Exit(2) from None
    chosen = tuple(t.strip() for t in targets.split(",") if t.strip())
    unknown = [t for t in chosen if t not in TARGETS]
    if unknown or not (chosen or external):
        raise typer.BadParameter(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    names = [*chosen, *(name for name, _ in external)]
    if len(set(names)) < len(names) or any(name.startswith("cocoon[") for name, _ in external):
        typer.echo(f"cocoon: error: target names must differ: {', '.join(names)}", err=True)
        raise typer.Exit(2)
    chosen_modes: list[Mode] = []
    for mode in (m.strip() for m in modes.split(",") if m.strip()):
        if mode not in ("plain", "stream"):
            raise typer.BadParameter(f"unknown mode {mode!r}; choose from plain, stream")
        chosen_modes.append("plain" if mode == "plain" else "stream")
    if not chosen_modes:
        raise typer.BadParameter("choose at least one mode: plain, stream")
    if engine not in ("synthetic", "llama"):
        raise typer.BadParameter(f"unknown engine {engine!r}; choose synthetic or llama")
    model_name = "synthetic-small"
    if engine == "llama":
        from ..worker.backends.base import BackendUnavailable
        from ..worker.backends.llama import DEFAULT_MODEL_NAME, bundled_model_file

        try:
            # The name both targets serve it under (the worker's default naming).
            model_name = model_file.stem if model_file else DEFAULT_MODEL_NAME
            if model_file is None:
                bundled_model_file()
        except BackendUnavailable as exc:
            typer.echo(f"cocoon: error: {exc}", err=True)
            raise typer.Exit(1) from None
    from ..registry.tiers import TierError, parse_tier

    chosen_tiers = tuple(t.strip() for t in tiers.split(";" if ";" in tiers else ",") if t.strip())
    try:
        for tier in chosen_tiers:
            parse_tier(tier)
    except TierError as exc:
        raise typer.BadParameter(str(exc)) from None
    if "replicated" in chosen_tiers and workers < 3:
        typer.echo("cocoon bench: the replicated tier needs 3 workers; starting 3", err=True)
        workers = 3
    options = BenchOptions(
        quick=quick,
        out=out,
        targets=chosen,
        concurrency=_levels(concurrency),
        modes=tuple(chosen_modes),
        max_seconds=max_seconds,
        max_requests=max_requests,
        workers=workers,
        max_tokens=tokens,
        token_delay_ms=token_delay_ms,
        litellm_python=litellm_python,
        engine=engine,
        payments=payments,
        tiers=chosen_tiers,
        model_file=model_file,
        model=model_name,
        external=external,
        external_model=target_model,
        pin=pin,
        rounds=rounds,
        command=shlex.join(["cocoon", *sys.argv[1:]]),
    )
    outcome = run_bench(options)
    typer.echo(f"report: {outcome.out / 'report.md'} (also report.json, report.png)")
    if not outcome.complete:
        raise typer.Exit(1)


@app.command("chain")
def chain(
    wallets: Annotated[
        int, typer.Option(min=1, max=256, help="Payer wallets, each with a payee and a channel.")
    ] = 8,
    transfers: Annotated[int, typer.Option(min=0, help="Wallet transfers to send.")] = 200,
    redeems: Annotated[int, typer.Option(min=0, help="Channel redeems to send.")] = 200,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Operations in flight (default: one per wallet).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the chain's state here (default: a temp dir).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Local chain throughput: transfers and channel redeems per second, latency, state size."""
    import asyncio
    import json

    from ..bench.chain import ChainBenchError, ChainBenchOptions, run_chain_bench
    from ..chain.local import LocalChainError
    from ..chain.ops import ChannelOpsError
    from ..chain.toncenter import ChainError
    from ..chain.wallet import WalletError

    options = ChainBenchOptions(
        wallets=wallets,
        transfers=transfers,
        redeems=redeems,
        concurrency=concurrency,
        data_dir=data_dir,
    )
    try:
        report = asyncio.run(run_chain_bench(options))
    except (LocalChainError, ChainError, ChannelOpsError, WalletError, ChainBenchError) as exc:
        typer.echo(f"cocoon: error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            typer.echo(line)


@app.command("compare")
def compare(
    reports: Annotated[
        list[Path],
        typer.Argument(help="report.json files of earlier runs, or the folders holding them."),
    ],
) -> None:
    """Several runs read together: Cocoon's ratio to each other target in every run, the
    median ratio, and the median CPU each spent a request."""
    from ..bench.compare import CompareError, read_reports, table
    from ..bench.compare import compare as compare_reports

    try:
        read = read_reports(reports)
    except CompareError as exc:
        typer.echo(f"cocoon: error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(table(compare_reports(read), len(read)))
