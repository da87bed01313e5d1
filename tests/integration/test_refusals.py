"""A client that requires attestation refuses an unattested proxy, says why, and counts it."""

from __future__ import annotations

import asyncio
import contextlib

from cocoon.client.session import ProxySession
from cocoon.config import ClientConfig, TeeConfig
from cocoon.node import make_credentials

from .conftest import NETWORK, InProcessNetwork


async def test_a_client_requiring_attestation_refuses_a_none_proxy(
    inproc: InProcessNetwork,
) -> None:
    proxy = await inproc.start_proxy()
    config = ClientConfig(
        network=NETWORK,
        proxy=f"127.0.0.1:{proxy.port}",
        data_dir=str(inproc.root / "strict-client"),
        tee=TeeConfig(allow_untrusted=False),
    )
    credentials = make_credentials(
        role="client", network=NETWORK, data_dir=inproc.root / "strict-client"
    )
    session = ProxySession(config, credentials)
    task = asyncio.create_task(session.run())
    try:
        for _ in range(500):  # bounded poll: the first handshake is in flight
            if session.dialer.refusals:
                break
            await asyncio.sleep(0.01)
        assert dict(session.dialer.refusals) == {"refused the proxy: untrusted_provider": 1}
        assert session.channel is None
    finally:
        await session.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
