"""A whole network inside the test's event loop: real TLS sockets on 127.0.0.1, no processes.

Every node is the real service object; only the attestation provider may be
swapped (to present evidence a bad node would).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from cocoon.client.gateway import Gateway
from cocoon.client.proxies import ProxyPool
from cocoon.client.session import ProxySession
from cocoon.config import (
    AuditConfig,
    ClientConfig,
    PaymentsConfig,
    ProxyConfig,
    TeeConfig,
    WorkerConfig,
)
from cocoon.node import make_credentials, provider_for
from cocoon.payments.ledger import Ledger
from cocoon.payments.sides import PayeeSide
from cocoon.proxy.service import Proxy
from cocoon.registry.follower import RootFollower
from cocoon.role_payments import client_payer, proxy_payments, worker_payee
from cocoon.roles import make_backend
from cocoon.tee.evidence import AttestationProvider
from cocoon.web.serve import web_gateway
from cocoon.worker.backends.base import Backend
from cocoon.worker.service import Worker

NETWORK = "cocoon-test"
# Development default: `none` evidence, accepted (and shown as untrusted).
OPEN = TeeConfig(allow_untrusted=True)


@dataclass
class InProcessNetwork:
    root: Path
    proxy: Proxy | None = None
    workers: list[Worker] = field(default_factory=list)
    session: ProxySession | None = None
    pool: ProxyPool | None = None
    base_url: str = ""
    gateway: Gateway | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.ServerRunner | None = None
    _pool_task: asyncio.Task[None] | None = None

    async def start_proxy(
        self,
        tee: TeeConfig = OPEN,
        payments: PaymentsConfig | None = None,
        follower: RootFollower | None = None,
    ) -> Proxy:
        config = ProxyConfig(
            network=NETWORK,
            listen="127.0.0.1:0",
            data_dir=str(self.root / "proxy"),
            tee=tee,
            payments=payments or PaymentsConfig(),
        )
        credentials = make_credentials(
            role="proxy", network=NETWORK, data_dir=self.root / "proxy", provider=provider_for(tee)
        )
        ledger = Ledger(self.root / "proxy" / "ledger.sqlite")
        self.proxy = Proxy(
            config, credentials, ledger, await proxy_payments(config, ledger), follower
        )
        await self.proxy.start()
        return self.proxy

    def launch_worker(
        self,
        name: str,
        *,
        tee: TeeConfig = OPEN,
        provider: AttestationProvider | None = None,
        now: int | None = None,
        payee: PayeeSide | None = None,
        follower: RootFollower | None = None,
        wrap: Callable[[Backend], Backend] | None = None,
        **overrides: object,
    ) -> Worker:
        """Start a worker without waiting for it to join (it may be refused); `wrap`
        replaces its backend (a dishonest one around the honest one)."""
        assert self.proxy is not None
        config = WorkerConfig(
            network=NETWORK,
            proxy=f"127.0.0.1:{self.proxy.port}",
            data_dir=str(self.root / name),
            tee=tee,
            **overrides,  # type: ignore[arg-type]
        )
        backend = make_backend(config)
        if wrap is not None:
            backend = wrap(backend)
        credentials = make_credentials(
            role="worker",
            network=NETWORK,
            data_dir=self.root / name,
            provider=provider if provider is not None else provider_for(tee),
            models=backend.models(),
            hpke_suite=config.hpke_suite,
            now=now,
            gpu_evidence=tee.gpu_evidence,
            region=tee.region,
        )
        worker = Worker(config, credentials, backend, payee, follower)
        self._tasks.append(asyncio.create_task(worker.run()))
        self.workers.append(worker)
        return worker

    async def start_worker(
        self, name: str, payments: PaymentsConfig | None = None, **options: object
    ) -> Worker:
        """Start a worker and wait until the proxy has it."""
        if payments is not None:
            assert self.proxy is not None
            config = WorkerConfig(
                network=NETWORK, data_dir=str(self.root / name), payments=payments
            )
            options["payee"] = await worker_payee(config)
            options["payments"] = payments
        worker = self.launch_worker(name, **options)  # type: ignore[arg-type]
        await asyncio.wait_for(worker.connected.wait(), 10)
        if payments is not None:
            # The proxy routes to a worker once its channel to it is open (on chain).
            async with asyncio.timeout(20):
                while True:
                    if self.proxy.router.workers.get(worker.credentials.key_id) is not None:
                        break
                    await asyncio.sleep(0.02)
        return worker

    async def start_paid_session(
        self, payments: PaymentsConfig, tee: TeeConfig = OPEN, **overrides: object
    ) -> ProxySession:
        """A client's proxy session that pays through a channel."""
        config = ClientConfig(
            network=NETWORK, data_dir=str(self.root / "client"), payments=payments
        )
        return self.start_session(tee, payer=await client_payer(config), **overrides)

    def start_session(self, tee: TeeConfig = OPEN, **overrides: object) -> ProxySession:
        """A client's proxy session without its HTTP gateway."""
        assert self.proxy is not None
        payer = overrides.pop("payer", None)
        follower = overrides.pop("follower", None)
        # Audits add requests of their own at random: only tests of them turn them on.
        overrides.setdefault("audit", AuditConfig(rate=0.0, audited_rate=0.0))
        config = ClientConfig(
            network=NETWORK,
            proxy=f"127.0.0.1:{self.proxy.port}",
            data_dir=str(self.root / "client"),
            tee=tee,
            **overrides,  # type: ignore[arg-type]
        )
        credentials = make_credentials(
            role="client",
            network=NETWORK,
            data_dir=self.root / "client",
            provider=provider_for(tee),
        )
        self.pool = ProxyPool(config, credentials, payer, follower)  # type: ignore[arg-type]
        self.session = next(iter(self.pool.sessions.values()))
        self._pool_task = asyncio.create_task(self.pool.run())
        self._tasks.append(self._pool_task)
        return self.session

    async def stop_client(self) -> None:
        """Stop the client (gateway, session, book), as before a restart: its data
        directory stays, for the next `start_client`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        session, self.session = self.session, None
        if session is not None:
            await session.stop()
            if session.payer is not None:
                await session.payer.link.close()
                session.payer.book.close()
        if self._pool_task is not None:
            self._pool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pool_task
            self._tasks.remove(self._pool_task)
            self._pool_task = None

    async def start_client(
        self, tee: TeeConfig = OPEN, payments: PaymentsConfig | None = None, **overrides: object
    ) -> str:
        """A client with its OpenAI-compatible gateway; returns the base URL."""
        session = (
            await self.start_paid_session(payments, tee, **overrides)
            if payments is not None
            else self.start_session(tee, **overrides)
        )
        assert self.pool is not None
        gateway = self.gateway = web_gateway(self.pool, session.config.api_keys)
        self._runner = web.ServerRunner(gateway.server())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def refused(self) -> dict[str, int]:
        """Handshakes the proxy refused, by reason."""
        assert self.proxy is not None
        return dict(self.proxy.snapshot()["refused_connections"])  # type: ignore[call-overload]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.session is not None:
            await self.session.stop()
        for worker in self.workers:
            await worker.stop()
        if self.proxy is not None:
            await self.proxy.stop()
            if self.proxy.payments is not None:
                await self.proxy.payments.link.close()
            self.proxy.ledger.close()
        for worker in self.workers:
            if worker.payee is not None:
                await worker.payee.link.close()
                worker.payee.book.close()
        if self.session is not None and self.session.payer is not None:
            await self.session.payer.link.close()
            self.session.payer.book.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(predicate: Callable[[], object], limit_s: float = 10.0) -> None:
    """Wait (bounded) for a condition that the event loop's other tasks make true."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
