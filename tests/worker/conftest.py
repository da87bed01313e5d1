"""Fixtures for backend tests: a synthetic OpenAI-compatible server on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from cocoon.upstream import UPSTREAM_STATS, UpstreamStats, serve
from cocoon.worker.backends import OpenAIBackend, OpenAIConfig, SyntheticConfig


@dataclass
class Upstream:
    """A running synthetic server."""

    runner: web.AppRunner
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def stats(self) -> UpstreamStats:
        return self.runner.app[UPSTREAM_STATS]


StartUpstream = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def start_upstream() -> AsyncIterator[StartUpstream]:
    runners: list[web.AppRunner] = []

    async def start(config: SyntheticConfig | None = None) -> Upstream:
        runner, port = await serve("127.0.0.1", 0, config or SyntheticConfig())
        runners.append(runner)
        return Upstream(runner, port)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def upstream(start_upstream: StartUpstream) -> Upstream:
    return await start_upstream()


@pytest.fixture
async def make_openai_backend() -> AsyncIterator[Callable[..., OpenAIBackend]]:
    backends: list[OpenAIBackend] = []

    def make(base_url: str, **options: object) -> OpenAIBackend:
        options.setdefault("models", ["synthetic-small"])
        backend = OpenAIBackend(OpenAIConfig(base_url=base_url, **options))  # type: ignore[arg-type]
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.aclose()
