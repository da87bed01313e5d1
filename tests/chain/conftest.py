"""A local chain per test, for the tests that talk to one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cocoon.chain.local import LocalChainClient
from harness.chain import local_chain_client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[LocalChainClient]:
    async with local_chain_client(tmp_path / "chain") as c:
        yield c
