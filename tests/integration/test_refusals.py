"""A client that requires attestation refuses an unattested proxy, says why, and counts it."""

from __future__ import annotations

import asyncio

from cocoon.config import TeeConfig

from .conftest import InProcessNetwork


async def test_a_client_requiring_attestation_refuses_a_none_proxy(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    session = inproc.start_session(TeeConfig(allow_untrusted=False))
    for _ in range(500):  # bounded poll: the first handshake is in flight
        if session.dialer.refusals:
            break
        await asyncio.sleep(0.01)
    assert dict(session.dialer.refusals) == {"refused the proxy: untrusted_provider": 1}
    assert session.channel is None
