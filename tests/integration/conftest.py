"""The in-process network as a fixture (see tests/harness/network.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
