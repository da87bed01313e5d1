"""The in-process network as a fixture (see tests/harness/network.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.network import NETWORK, OPEN, InProcessNetwork

__all__ = ["NETWORK", "OPEN", "InProcessNetwork"]


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[InProcessNetwork]:
    net = InProcessNetwork(tmp_path)
    try:
        yield net
    finally:
        await net.stop()
