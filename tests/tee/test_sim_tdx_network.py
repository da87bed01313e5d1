"""A sim-tdx network in the test's event loop: bad workers are refused, with the reason shown.

Real TLS sockets on 127.0.0.1 and the real DCAP verification; the only
stand-ins are the simulated platforms (other image, debug TD) and a provider
whose quotes commit to claims other than the worker's.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cocoon.config import TeeConfig
from cocoon.tee.evidence import AttestationProvider, Evidence
from cocoon.tee.sim_tdx import SimTdxProvider, local_build_platform
from harness.network import InProcessNetwork, until

BUILD = local_build_platform().image_hash


class ForeignClaimsProvider:
    """A genuine sim-tdx quote, but over report data that is not the worker's claims."""

    name = "sim-tdx"

    def __init__(self) -> None:
        self.inner = SimTdxProvider(platform=local_build_platform())

    def evidence(self, report_data: bytes) -> Evidence:
        return self.inner.evidence(hashlib.sha512(b"someone else" + report_data).digest())


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[InProcessNetwork]:
    network = InProcessNetwork(tmp_path)
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
    net: InProcessNetwork,
    make_provider: Callable[[], AttestationProvider],
    now_offset: int,
    reason: str,
) -> None:
    await net.start_proxy(STRICT)
    await net.start_worker("good", tee=STRICT)
    net.launch_worker(
        "bad", tee=STRICT, provider=make_provider(), now=int(time.time()) + now_offset
    )
    await until(lambda: reason in net.refused())
    assert net.proxy is not None
    assert len(net.proxy.snapshot()["workers"]) == 1  # type: ignore[arg-type]


async def test_client_refuses_a_worker_its_proxy_let_in(net: InProcessNetwork) -> None:
    # The proxy pins no image; the client does, and checks workers itself.
    await net.start_proxy(TeeConfig(provider="sim-tdx"))
    good = await net.start_worker("good", tee=STRICT)
    other = await net.start_worker(
        "other",
        tee=STRICT,
        provider=SimTdxProvider(platform=local_build_platform("other-image")),
    )
    session = net.start_session(STRICT)
    workers = await asyncio.wait_for(session.workers(refresh=True), 10)
    assert [w.key_id for w in workers] == [good.credentials.key_id]
    assert workers[0].verdict.trusted and workers[0].verdict.measurements["image_hash"] == BUILD
    refused = session.verifier.refused
    assert refused[other.credentials.key_id].startswith("measurement_not_allowed")
    assert good.credentials.key_id not in refused
