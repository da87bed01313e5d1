"""A session that fails does not end its dialer: the peer is dialled again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocoon.node import make_credentials, peer_policy, provider_for
from cocoon.wire import dialer as dialer_module
from cocoon.wire.dialer import Dialer
from cocoon.wire.transport import Channel
from harness.network import NETWORK, OPEN, InProcessNetwork


async def test_a_failing_session_is_logged_and_the_peer_dialled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialer_module, "RECONNECT_MAX_S", 0.05)
    net = InProcessNetwork(tmp_path)
    proxy = await net.start_proxy()
    credentials = make_credentials(
        role="client", network=NETWORK, data_dir=tmp_path / "c", provider=provider_for(OPEN)
    )
    dialer = Dialer(
        "127.0.0.1",
        proxy.port,
        local=lambda: credentials.local,
        policy=peer_policy(NETWORK, True),
        accept_roles=frozenset({"proxy"}),
        peer_name="proxy",
    )
    calls: list[Channel] = []
    second = asyncio.Event()

    async def session(channel: Channel) -> None:
        calls.append(channel)
        if len(calls) == 1:
            raise RuntimeError("a bug in the session handler")
        second.set()
        dialer.stop()
        await channel.close()

    task = asyncio.create_task(dialer.run(session))
    try:
        await asyncio.wait_for(second.wait(), 10)
        assert len(calls) == 2 and calls[0].closed
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await net.stop()
