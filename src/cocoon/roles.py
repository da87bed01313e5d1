"""Run one role as a long-lived process: build it from config, serve, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from .client.proxies import ProxyPool
from .client.verdicts import Verdicts
from .config import (
    ClientConfig,
    ProxyConfig,
    WorkerConfig,
    split_address,
)
from .node import RENEW_EVERY_S, make_credentials, provider_for
from .payments.ledger import Ledger
from .payments.sides import COLLECT_AT_STOP_S
from .proxy.http import make_app as proxy_app
from .proxy.service import Proxy
from .registry.follower import follow_root
from .role_payments import (
    chain_client,
    client_payer,
    proxy_payments,
    worker_payee,
)
from .web.serve import web_gateway
from .worker.backends import RoutedBackend, backend_from_config
from .worker.backends.base import Backend
from .worker.backends.lying import LyingBackend, LyingConfig
from .worker.http import make_app as worker_app
from .worker.service import Worker

log = logging.getLogger(__name__)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _renew_periodically(renew: Callable[[], Awaitable[None]]) -> None:
    """Certificates live a day (DESIGN §3); renew each well before it lapses."""
    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        await renew()


async def _settle_periodically(settle: Callable[[], Awaitable[object]], interval_s: float) -> None:
    """Redeem and top up on chain now and then; a failure is logged, never fatal."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await settle()
        except Exception:
            log.exception("settling on chain failed")


def _ready(path: Path | None, info: dict[str, object]) -> None:
    """The node serves: settle the garbage collector, and tell a supervisor
    (cocoon up, tests) where."""
    # What start-up made lives as long as the process: out of the collector's
    # way, full collections no longer walk it (see `run` for the numbers).
    gc.freeze()
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


async def _serve_http(
    app: web.Application | web.Server, address: str
) -> tuple[web.BaseRunner, int]:
    host, port = split_address(address)
    runner: web.BaseRunner = (
        web.ServerRunner(app)
        if isinstance(app, web.Server)
        else web.AppRunner(app, access_log=None, handler_cancellation=True)
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound = int(address[1])
            break
    return runner, bound


async def run_proxy(
    config: ProxyConfig, ready_file: Path | None = None, stop: asyncio.Event | None = None
) -> None:
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    data_dir = Path(config.data_dir)
    credentials = make_credentials(
        role="proxy", network=config.network, data_dir=data_dir, provider=provider_for(config.tee)
    )
    ledger = Ledger(data_dir / "ledger.sqlite")
    payments = await proxy_payments(config, ledger)
    link = payments.link if payments is not None else None
    following = await follow_root(config.payments, config.registry, chain_client(link))
    follower = following.follower
    proxy = Proxy(config, credentials, ledger, payments, follower)
    await proxy.start()
    renewer = asyncio.create_task(_renew_periodically(proxy.renew_certificate))
    settler = asyncio.create_task(
        _settle_periodically(proxy.settle, config.payments.settle_interval_s)
    )
    runner, http_port = await _serve_http(proxy_app(proxy), config.http)
    host = split_address(config.listen)[0]
    http_host = split_address(config.http)[0]
    log.info("proxy status page on http://%s:%d/", http_host, http_port)
    _ready(
        ready_file,
        {
            "role": "proxy",
            "key_id": credentials.key_id,
            "listen": f"{host}:{proxy.port}",
            "http": f"http://{http_host}:{http_port}",
        },
    )
    try:
        await stop.wait()
    finally:
        log.info("proxy stopping")
        renewer.cancel()
        settler.cancel()
        await proxy.stop()
        await runner.cleanup()
        if link is not None:
            # At exit: redeem whatever clients vouchered and is not on chain yet.
            try:
                await proxy.settle(final=True)
            except Exception:
                log.exception("final settlement failed")
        await following.close()
        if link is not None:
            await link.close()
        if payments is not None:
            payments.book.close()  # its journal of requests folded in, on the ledger's file
        ledger.close()


def make_backend(config: WorkerConfig) -> Backend:
    """The worker's backend, with its embeddings model beside it when one is set.

    Raises BackendUnavailable when a built-in engine or its model is not installed.
    """
    backend = _chat_backend(config)
    if config.lying.lie_rate > 0:
        # A dishonest worker: tests and audit checks only (DESIGN §11).
        lying = config.lying
        backend = LyingBackend(
            backend, LyingConfig(lie_rate=lying.lie_rate, lie_mode=lying.lie_mode, salt=lying.salt)
        )
    if not config.embeddings.backend:
        return backend
    embeddings = backend_from_config(
        config.embeddings.backend,
        model_dir=config.embeddings.model_dir,
        model_name=config.embeddings.model_name,
        max_queue=config.embeddings.max_queue,
        id_cache=_id_cache(config),
    )
    return RoutedBackend([backend, embeddings])


def _id_cache(config: WorkerConfig) -> str:
    # Beside the worker's keys: hashing a model at every start would cost a
    # read of every byte of it.
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(config.data_dir) / "model-ids.json")


def _chat_backend(config: WorkerConfig) -> Backend:
    if config.backend == "synthetic":
        options: dict[str, object] = {
            "models": config.models,
            "tokens_per_second": config.synthetic.tokens_per_second,
            "first_token_delay_ms": config.synthetic.first_token_delay_ms,
            "default_max_tokens": config.synthetic.default_max_tokens,
        }
    elif config.backend == "openai":
        options = {
            "base_url": config.openai.base_url,
            "api_key": config.openai.api_key,
            "models": config.models,
            "upstream_model": config.openai.upstream_model,
            "timeout_s": config.openai.timeout_s,
            "scoring": config.openai.scoring,
            "scoring_logprobs": config.openai.scoring_logprobs,
            "features": config.openai.features,
        }
    elif config.backend == "llama":
        llama = config.llama
        options = {
            "model_file": llama.model_file,
            "model_name": llama.model_name,
            "context_tokens": llama.context_tokens,
            "threads": llama.threads,
            "parallel": llama.parallel,
            "max_queue": llama.max_queue,
            "id_cache": _id_cache(config),
        }
    else:
        options = {}
    return backend_from_config(config.backend, **options)


async def run_worker(
    config: WorkerConfig, ready_file: Path | None = None, stop: asyncio.Event | None = None
) -> None:
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    backend = make_backend(config)
    credentials = make_credentials(
        role="worker",
        network=config.network,
        data_dir=Path(config.data_dir),
        provider=provider_for(config.tee),
        models=backend.models(),
        hpke_suite=config.hpke_suite,
        gpu_evidence=config.tee.gpu_evidence,
        region=config.tee.region,
    )
    payee = await worker_payee(config)
    book = payee.book if payee is not None else None
    link = payee.link if payee is not None else None
    following = await follow_root(
        config.payments, config.registry, chain_client(link), proxies=config.proxies
    )
    follower = following.follower
    worker = Worker(config, credentials, backend, payee, follower)
    settler = (
        asyncio.create_task(_settle_periodically(worker.settle, config.payments.settle_interval_s))
        if payee is not None
        else None
    )
    runner, http_port = await _serve_http(worker_app(worker), config.http)
    http_host = split_address(config.http)[0]
    log.info("worker stats on http://%s:%d/jsonstats", http_host, http_port)
    task = asyncio.create_task(worker.run())
    renewer = asyncio.create_task(_renew_periodically(worker.renew_certificate))
    connected = asyncio.create_task(worker.ready.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({connected, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if worker.ready.is_set():
        _ready(
            ready_file,
            {
                "role": "worker",
                "key_id": credentials.key_id,
                "models": backend.models(),
                "http": f"http://{http_host}:{http_port}",
            },
        )
    try:
        await stop.wait()
    finally:
        connected.cancel()
        stopped.cancel()
        log.info("worker stopping")
        renewer.cancel()
        # Before the connections close: ask each proxy for what it owes on its cadence.
        await worker.collect(COLLECT_AT_STOP_S)
        await runner.cleanup()
        await worker.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if payee is not None:
            if settler is not None:
                settler.cancel()
            try:
                await worker.settle(final=True)
            except Exception:
                log.exception("final settlement failed")
        await following.close()
        if payee is not None:
            await payee.link.close()
        if book is not None:
            book.close()


async def run_client(
    config: ClientConfig, ready_file: Path | None = None, stop: asyncio.Event | None = None
) -> None:
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    credentials = make_credentials(
        role="client",
        network=config.network,
        data_dir=Path(config.data_dir),
        provider=provider_for(config.tee),
    )
    payer = await client_payer(config)
    link = payer.link if payer is not None else None
    following = await follow_root(
        config.payments, config.registry, chain_client(link), proxies=config.proxies
    )
    follower = following.follower
    session = ProxyPool(config, credentials, payer, follower)
    task = asyncio.create_task(session.run())
    renewer = asyncio.create_task(_renew_periodically(session.renew_certificate))
    verdicts = Verdicts(session, follower, link.wallet if link is not None else None)
    gateway = web_gateway(session, config.api_keys, verdicts)
    runner, port = await _serve_http(gateway.server(), config.listen)
    host = split_address(config.listen)[0]
    log.info("OpenAI-compatible API on http://%s:%d/v1", host, port)
    _ready(
        ready_file,
        {"role": "client", "key_id": credentials.key_id, "base_url": f"http://{host}:{port}/v1"},
    )
    try:
        await stop.wait()
    finally:
        log.info("client stopping")
        renewer.cancel()
        await runner.cleanup()
        await verdicts.stop()
        await session.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await following.close()
        if payer is not None:
            await payer.link.close()
            payer.book.close()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine on uvloop where available."""
    # A request allocates hundreds of short-lived containers in each node, so
    # with the default threshold (700) the collector ran many times a request
    # and took 6 to 7 % of the servers' CPU (perf). Collecting the young
    # generation every 50,000 allocations and freezing what start-up made
    # (`_ready`) gave 2 to 4 % more requests/s at c=64 (`cocoon bench`, runs
    # alternated); cycles are still collected, only in larger batches.
    gc.set_threshold(50_000, 20, 20)
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
