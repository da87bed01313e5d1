"""Through a real network: a client encapsulates once per worker, and each worker
decapsulates once per client, however many requests follow."""

from __future__ import annotations

import asyncio
from typing import Any

import openai

from cocoon.crypto.sealing import OpenSessions

from .conftest import InProcessNetwork


async def test_many_requests_one_session_per_worker(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    workers = [await inproc.start_worker(name) for name in ("worker1", "worker2")]
    client = openai.AsyncOpenAI(
        base_url=await inproc.start_client(), api_key="unused", max_retries=0
    )
    messages: Any = [{"role": "user", "content": "hello"}]

    async def ask(stream: bool) -> None:
        if stream:
            async for _ in await client.chat.completions.create(
                model="synthetic-small", messages=messages, max_tokens=4, stream=True
            ):
                pass
        else:
            await client.chat.completions.create(
                model="synthetic-small", messages=messages, max_tokens=4
            )

    await asyncio.gather(*(ask(i % 2 == 0) for i in range(24)))
    assert [w.sessions.opened for w in workers] == [int(w.stats.completed > 0) for w in workers]
    # A worker restarted with its key (here: its sessions dropped) opens the
    # client's session again instead of failing the request.
    before = [w.stats.completed for w in workers]
    for worker in workers:
        worker.sessions = worker.serving.sessions = OpenSessions(
            worker.sessions.keypair, worker.config.network
        )
    await asyncio.gather(*(ask(False) for _ in range(8)))
    await client.close()

    session = inproc.session
    assert session is not None
    assert session.sealing.opened == 2  # one per worker, not one per request per candidate
    assert sum(w.stats.completed for w in workers) == 32
    for worker, served in zip(workers, before, strict=True):
        opened = int(worker.stats.completed > served)
        assert worker.snapshot()["seal_sessions"] == {"held": opened, "opened": opened}
