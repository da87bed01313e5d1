"""A whole network inside the test's event loop: real TLS sockets on 127.0.0.1, no processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from cocoon.client.gateway import Gateway
from cocoon.client.session import ProxySession
from cocoon.config import ClientConfig, ProxyConfig, TeeConfig, WorkerConfig
from cocoon.node import make_credentials
from cocoon.payments.ledger import Ledger
from cocoon.proxy.service import Proxy
from cocoon.roles import make_backend
from cocoon.worker.service import Worker

NETWORK = "cocoon-test"
TEE = TeeConfig(allow_untrusted=True)


@dataclass
class InProcessNetwork:
    root: Path
    proxy: Proxy | None = None
    workers: list[Worker] = field(default_factory=list)
    session: ProxySession | None = None
    base_url: str = ""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start_proxy(self) -> Proxy:
        config = ProxyConfig(
            network=NETWORK, listen="127.0.0.1:0", data_dir=str(self.root / "proxy"), tee=TEE
        )
        credentials = make_credentials(role="proxy", network=NETWORK, data_dir=self.root / "proxy")
        self.proxy = Proxy(config, credentials, Ledger(self.root / "proxy" / "ledger.sqlite"))
        await self.proxy.start()
        return self.proxy

    async def start_worker(self, name: str, **overrides: object) -> Worker:
        assert self.proxy is not None
        config = WorkerConfig(
            network=NETWORK,
            proxy=f"127.0.0.1:{self.proxy.port}",
            data_dir=str(self.root / name),
            tee=TEE,
            **overrides,  # type: ignore[arg-type]
        )
        backend = make_backend(config)
        credentials = make_credentials(
            role="worker",
            network=NETWORK,
            data_dir=self.root / name,
            models=backend.models(),
            hpke_suite=config.hpke_suite,
        )
        worker = Worker(config, credentials, backend)
        self._tasks.append(asyncio.create_task(worker.run()))
        await asyncio.wait_for(worker.connected.wait(), 10)
        self.workers.append(worker)
        return worker

    async def start_client(self, **overrides: object) -> str:
        assert self.proxy is not None
        config = ClientConfig(
            network=NETWORK,
            proxy=f"127.0.0.1:{self.proxy.port}",
            data_dir=str(self.root / "client"),
            tee=TEE,
            **overrides,  # type: ignore[arg-type]
        )
        credentials = make_credentials(
            role="client", network=NETWORK, data_dir=self.root / "client"
        )
        self.session = ProxySession(config, credentials)
        self._tasks.append(asyncio.create_task(self.session.run()))
        gateway = Gateway(self.session, config.api_keys)
        self._runner = web.AppRunner(gateway.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.session is not None:
            await self.session.stop()
        for worker in self.workers:
            await worker.stop()
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy.ledger.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[InProcessNetwork]:
    net = InProcessNetwork(tmp_path)
    try:
        yield net
    finally:
        await net.stop()
