"""A sim-tdx network in the test's event loop: bad workers are refused, with the reason shown.

Real TLS sockets on 127.0.0.1 and the real DCAP verification; the only
stand-ins are the simulated platforms (other image, debug TD) and a provider
whose quotes commit to claims other than the worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cocoon.client.session import ProxySession
from cocoon.config import ClientConfig, ProxyConfig, TeeConfig, WorkerConfig
from cocoon.node import make_credentials, provider_for
from cocoon.payments.ledger import Ledger
from cocoon.proxy.service import Proxy
from cocoon.roles import make_backend
from cocoon.tee.evidence import AttestationProvider, Evidence
from cocoon.tee.sim_tdx import SimTdxProvider, local_build_platform
from cocoon.worker.service import Worker

NETWORK = "cocoon-sim"
BUILD = local_build_platform().image_hash


class ForeignClaimsProvider:
    """A genuine sim-tdx quote, but over report data that is not the worker's claims."""

    name = "sim-tdx"

    def __init__(self) -> None:
        self.inner = SimTdxProvider(platform=local_build_platform())

    def evidence(self, report_data: bytes) -> Evidence:
        return self.inner.evidence(hashlib.sha512(b"someone else" + report_data).digest())


@dataclass
class SimNetwork:
    root: Path
    proxy: Proxy | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    session: ProxySession | None = None

    async def start_proxy(self, tee: TeeConfig) -> Proxy:
        config = ProxyConfig(
            network=NETWORK, listen="127.0.0.1:0", data_dir=str(self.root / "p"), tee=tee
        )
        creds = make_credentials(
            role="proxy", network=NETWORK, data_dir=self.root / "p", provider=provider_for(tee)
        )
        self.proxy = Proxy(config, creds, Ledger(self.root / "p" / "ledger.sqlite"))
        await self.proxy.start()
        return self.proxy

    def start_worker(
        self, name: str, provider: AttestationProvider, *, now: int | None = None
    ) -> Worker:
        assert self.proxy is not None
        config = WorkerConfig(
            network=NETWORK,
            proxy=f"127.0.0.1:{self.proxy.port}",
            data_dir=str(self.root / name),
            tee=TeeConfig(provider="sim-tdx", image_hashes=[BUILD]),
        )
        backend = make_backend(config)
        creds = make_credentials(
            role="worker",
            network=NETWORK,
            data_dir=self.root / name,
            provider=provider,
            models=backend.models(),
            now=now,
        )
        worker = Worker(config, creds, backend)
        self.tasks.append(asyncio.create_task(worker.run()))
        self.workers.append(worker)
        return worker

    def start_client(self, tee: TeeConfig) -> ProxySession:
        assert self.proxy is not None
        config = ClientConfig(
            network=NETWORK,
            proxy=f"127.0.0.1:{self.proxy.port}",
            data_dir=str(self.root / "c"),
            tee=tee,
        )
        creds = make_credentials(
            role="client", network=NETWORK, data_dir=self.root / "c", provider=provider_for(tee)
        )
        self.session = ProxySession(config, creds)
        self.tasks.append(asyncio.create_task(self.session.run()))
        return self.session

    def refused(self) -> dict[str, int]:
        assert self.proxy is not None
        return dict(self.proxy.snapshot()["refused_connections"])  # type: ignore[call-overload]

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.stop()
        for worker in self.workers:
            await worker.stop()
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy.ledger.close()
        for task in self.tasks:
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


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[SimNetwork]:
    network = SimNetwork(tmp_path)
    yield network
    await network.stop()


STRICT = TeeConfig(provider="sim-tdx", image_hashes=[BUILD])


@pytest.mark.parametrize(
    ("make_provider", "now_offset", "reason"),
    [
        (lambda: SimTdxProvider(platform=local_build_platform(debug=True)), 0, "debug_td"),
        (
            lambda: SimTdxProvider(platform=local_build_platform("other-image")),
            0,
            "measurement_not_allowed",
        ),
        (ForeignClaimsProvider, 0, "report_data_mismatch"),
        (lambda: SimTdxProvider(platform=local_build_platform()), -3 * 86400, "expired"),
    ],
    ids=["debug", "image", "report_data", "expired_certificate"],
)
async def test_proxy_refuses_bad_workers_with_reason(
    net: SimNetwork, make_provider: Callable[[], AttestationProvider], now_offset: int, reason: str
) -> None:
    await net.start_proxy(STRICT)
    good = net.start_worker("good", provider_for(STRICT))
    await asyncio.wait_for(good.connected.wait(), 10)
    net.start_worker("bad", make_provider(), now=int(time.time()) + now_offset)
    await until(lambda: reason in net.refused())
    assert net.proxy is not None
    assert len(net.proxy.snapshot()["workers"]) == 1  # type: ignore[arg-type]


async def test_client_refuses_a_worker_its_proxy_let_in(net: SimNetwork) -> None:
    # The proxy pins no image; the client does, and checks workers itself.
    await net.start_proxy(TeeConfig(provider="sim-tdx"))
    good = net.start_worker("good", provider_for(STRICT))
    other = net.start_worker("other", SimTdxProvider(platform=local_build_platform("other-image")))
    await asyncio.wait_for(good.connected.wait(), 10)
    await asyncio.wait_for(other.connected.wait(), 10)
    session = net.start_client(STRICT)
    workers = await asyncio.wait_for(session.workers(refresh=True), 10)
    assert [w.key_id for w in workers] == [good.credentials.key_id]
    assert workers[0].verdict.trusted and workers[0].verdict.measurements["image_hash"] == BUILD
    refused = session.verifier.refused
    assert refused[other.credentials.key_id].startswith("measurement_not_allowed")
    assert good.credentials.key_id not in refused
