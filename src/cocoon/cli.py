"""The `cocoon` command line: up, proxy, worker, client, upstream."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from . import __version__, request_log
from .config import ClientConfig, ConfigError, ProxyConfig, WorkerConfig, load
from .tee.model_id import with_model_ids

app = typer.Typer(
    name="cocoon",
    help="Cocoon: confidential AI inference, sealed end to end, paid in TON.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=False)
]
ReadyOpt = Annotated[
    Path | None, typer.Option(help="Write a JSON line here once serving (for supervisors).")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
NetworkOpt = Annotated[str | None, typer.Option(help="Network id (all nodes must agree).")]
UntrustedOpt = Annotated[
    bool | None,
    typer.Option(
        "--allow-untrusted/--require-attestation",
        help="Accept peers without hardware attestation (shown as untrusted).",
    ),
]
DataDirOpt = Annotated[str | None, typer.Option(help="Where keys and state live.")]
ProxiesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--proxies",
        help='Proxy endpoints host:port, or "root": those the root contract registers'
        " (repeatable; replaces --proxy).",
    ),
]


def fail(message: str) -> None:
    """One line on stderr, exit 1: the CLI's error convention."""
    typer.echo(f"cocoon: error: {message}", err=True)
    raise typer.Exit(1)


def _logging(verbose: bool) -> None:
    request_log.install(logging.DEBUG if verbose else logging.INFO)


def _common(
    network: str | None, allow_untrusted: bool | None, data_dir: str | None
) -> dict[str, Any]:
    overrides: dict[str, Any] = {"network": network, "data_dir": data_dir}
    if allow_untrusted is not None:
        overrides["tee"] = {"allow_untrusted": allow_untrusted}
    return overrides


def _run_role(main: Any, what: str) -> None:
    """Run a role; turn the errors a user can fix into one line and exit 1."""
    from .payments.errors import PaymentError
    from .registry.follower import RegistryError
    from .roles import run
    from .tee.errors import AttestationError
    from .worker.backends.base import BackendUnavailable

    try:
        run(main)
    except BackendUnavailable as exc:
        fail(f"backend: {exc}")
    except OSError as exc:
        fail(f"{what}: {exc.strerror or exc}")
    except AttestationError as exc:
        fail(f"attestation: {exc}")
    except PaymentError as exc:
        fail(f"payments: {exc}")
    except RegistryError as exc:
        fail(f"root: {exc}")


def _load(cls: Any, path: Path | None, overrides: dict[str, Any]) -> Any:
    try:
        return load(cls, path, overrides)
    except ConfigError as exc:
        fail(str(exc))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def proxy(
    config: ConfigOpt = None,
    listen: Annotated[str | None, typer.Option(help="Wire endpoint host:port.")] = None,
    http: Annotated[str | None, typer.Option(help="Status/metrics endpoint host:port.")] = None,
    network: NetworkOpt = None,
    allow_untrusted: UntrustedOpt = None,
    data_dir: DataDirOpt = None,
    ready_file: ReadyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a proxy."""
    from .roles import run_proxy

    _logging(verbose)
    overrides = _common(network, allow_untrusted, data_dir) | {"listen": listen, "http": http}
    cfg: ProxyConfig = _load(ProxyConfig, config, overrides)
    _run_role(lambda: run_proxy(cfg, ready_file), f"cannot serve on {cfg.listen} / {cfg.http}")


@app.command()
def worker(
    config: ConfigOpt = None,
    proxy: Annotated[str | None, typer.Option(help="Proxy wire endpoint host:port.")] = None,
    proxies: ProxiesOpt = None,
    http: Annotated[str | None, typer.Option(help="Stats/metrics endpoint host:port.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Model to serve (repeatable).")] = None,
    model_file: Annotated[
        list[str] | None,
        typer.Option(
            help="[NAME=]PATH of a model's files: serve and claim NAME@sha256:<root> "
            "(replaces a --model/config entry of that name; repeatable). With "
            "--backend llama: the GGUF file to run (once)."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="synthetic, openai or llama.")] = None,
    embeddings: Annotated[
        str | None,
        typer.Option(help='Also serve an embeddings model: "sentence-transformers".'),
    ] = None,
    upstream: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")] = None,
    upstream_api_key: Annotated[str | None, typer.Option(help="Key for the upstream.")] = None,
    upstream_model: Annotated[str | None, typer.Option(help="Model name upstream.")] = None,
    coefficient_milli: Annotated[
        int | None, typer.Option(help="Price coefficient in thousandths.")
    ] = None,
    max_active_requests: Annotated[int | None, typer.Option(help="Concurrent requests.")] = None,
    tokens_per_second: Annotated[float | None, typer.Option(help="Synthetic speed.")] = None,
    first_token_delay_ms: Annotated[float | None, typer.Option(help="Synthetic delay.")] = None,
    network: NetworkOpt = None,
    allow_untrusted: UntrustedOpt = None,
    data_dir: DataDirOpt = None,
    ready_file: ReadyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a worker."""
    from .roles import run_worker
    from .worker.backends import BACKEND_KINDS, EMBEDDINGS_KINDS

    _logging(verbose)
    overrides = _common(network, allow_untrusted, data_dir) | {
        "proxy": proxy,
        "proxies": proxies or None,
        "http": http,
        "models": model or None,
        "backend": backend,
        "coefficient_milli": coefficient_milli,
        "max_active_requests": max_active_requests,
        "openai": {
            "base_url": upstream,
            "api_key": upstream_api_key,
            "upstream_model": upstream_model,
        },
        "synthetic": {
            "tokens_per_second": tokens_per_second,
            "first_token_delay_ms": first_token_delay_ms,
        },
        "embeddings": {"backend": embeddings},
    }
    cfg: WorkerConfig = _load(WorkerConfig, config, overrides)
    if cfg.backend not in BACKEND_KINDS:
        fail(f"unknown backend {cfg.backend!r}; expected one of {', '.join(BACKEND_KINDS)}")
    if cfg.embeddings.backend not in ("", *EMBEDDINGS_KINDS):
        fail(
            f"unknown embeddings backend {cfg.embeddings.backend!r};"
            f" expected one of {', '.join(EMBEDDINGS_KINDS)}"
        )
    if model_file and cfg.backend == "llama":
        # The engine hashes the file it loads itself (and caches the id).
        if len(model_file) != 1:
            fail("--backend llama runs one model: give --model-file once")
        name, sep, path = model_file[0].partition("=")
        llama = msgspec.structs.replace(
            cfg.llama, model_file=path if sep else name, model_name=name if sep else ""
        )
        cfg = msgspec.structs.replace(cfg, llama=llama)
    elif model_file:
        cfg = msgspec.structs.replace(
            cfg, models=with_model_ids(cfg.models, _model_ids(model_file))
        )
    _run_role(lambda: run_worker(cfg, ready_file), f"cannot serve stats on {cfg.http}")


def _model_ids(specs: list[str]) -> list[str]:
    """``[NAME=]PATH`` → model ids, hashing each model's files (cocoon.tee.model_id)."""
    from .tee.model_id import ModelIdError, model_id

    ids = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        try:
            ids.append(model_id(Path(path if sep else spec), name if sep else None))
        except ModelIdError as exc:
            fail(f"--model-file {spec}: {exc}")
    return ids


@app.command()
def client(
    config: ConfigOpt = None,
    proxy: Annotated[str | None, typer.Option(help="Proxy wire endpoint host:port.")] = None,
    proxies: ProxiesOpt = None,
    listen: Annotated[str | None, typer.Option(help="HTTP endpoint host:port.")] = None,
    api_key: Annotated[
        list[str] | None, typer.Option(help="Require this bearer key (repeatable).")
    ] = None,
    network: NetworkOpt = None,
    allow_untrusted: UntrustedOpt = None,
    data_dir: DataDirOpt = None,
    ready_file: ReadyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a client gateway (OpenAI-compatible HTTP API)."""
    from .roles import run_client

    _logging(verbose)
    overrides = _common(network, allow_untrusted, data_dir) | {
        "proxy": proxy,
        "proxies": proxies or None,
        "listen": listen,
        "api_keys": api_key or None,
    }
    cfg: ClientConfig = _load(ClientConfig, config, overrides)
    _run_role(lambda: run_client(cfg, ready_file), f"cannot listen on {cfg.listen}")


@app.command()
def upstream(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    model: Annotated[list[str] | None, typer.Option(help="Model names.")] = None,
    tokens_per_second: Annotated[float, typer.Option(help="Token rate (0: unlimited).")] = 0.0,
    first_token_delay_ms: Annotated[
        float, typer.Option(help="Delay before the first token.")
    ] = 0.0,
    default_max_tokens: Annotated[
        int, typer.Option(min=1, help="Longest natural answer, in tokens.")
    ] = 64,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the synthetic backend as a plain OpenAI-compatible server (tests, benchmarks)."""
    import asyncio

    from .roles import run
    from .upstream import serve
    from .worker.backends.synthetic import SyntheticConfig

    _logging(verbose)

    async def main() -> None:
        config = SyntheticConfig(
            models=model or ["synthetic-small"],
            tokens_per_second=tokens_per_second,
            first_token_delay_ms=first_token_delay_ms,
            default_max_tokens=default_max_tokens,
        )
        runner, bound = await serve(host, port, config)
        typer.echo(f"OpenAI-compatible upstream on http://{host}:{bound}/v1", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    run(main)


def _register_subcommands() -> None:
    from .commands import attest, bench, chain, model, root, stake, up, verify, wallet

    app.command("up")(up.up)
    app.command("chain")(chain.chain)
    app.command("verify")(verify.verify)
    app.add_typer(attest.app, name="attest")
    app.add_typer(model.app, name="model")
    app.add_typer(bench.app, name="bench")
    app.add_typer(wallet.app, name="wallet")
    app.add_typer(stake.app, name="stake")
    app.add_typer(root.app, name="root")
    from .commands import bot

    app.command("bot")(bot.bot)


_register_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
