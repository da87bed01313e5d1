"""The in-process network as a fixture (see tests/harness/network.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from cocoon.proxy.service import Proxy
from cocoon.worker.service import Worker
from harness.chain import Settings, paid_network
from harness.network import NETWORK, OPEN, InProcessNetwork

__all__ = ["NETWORK", "OPEN", "InProcessNetwork"]


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[InProcessNetwork]:
    net = InProcessNetwork(tmp_path)
    try:
        yield net
    finally:
        await net.stop()


@pytest.fixture
async def paid(tmp_path: Path) -> AsyncIterator[tuple[InProcessNetwork, Settings]]:
    """An in-process network with payments on, on the local chain (the tests that use
    it are marked `harness.chain.NEEDS_LOCAL_CHAIN`)."""
    async with paid_network(tmp_path) as paid:
        yield paid


# A paying proxy, its one worker, and a client seen through the OpenAI SDK.
PaidPath = tuple[Proxy, Worker, openai.AsyncOpenAI]


@pytest.fixture
async def paid_path(paid: tuple[InProcessNetwork, Settings]) -> AsyncIterator[PaidPath]:
    """On `paid`: a proxy, worker1 and a client (no SDK retries, a 20 s timeout)."""
    network, settings = paid
    proxy = await network.start_proxy(payments=settings("proxy"))
    worker = await network.start_worker("worker1", payments=settings("worker1"))
    client = openai.AsyncOpenAI(
        base_url=await network.start_client(payments=settings("client")),
        api_key="x",
        max_retries=0,
        timeout=20,
    )
    yield proxy, worker, client
    await client.close()
