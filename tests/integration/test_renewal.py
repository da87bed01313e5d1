"""Renewed certificates reach the peers of long-lived connections, and nothing breaks."""

from __future__ import annotations

import asyncio

import openai

from .conftest import InProcessNetwork

CHAT = {"model": "synthetic-small", "messages": [{"role": "user", "content": "hi"}]}


async def test_renewing_every_node_keeps_the_network_working(inproc: InProcessNetwork) -> None:
    proxy = await inproc.start_proxy()
    worker = await inproc.start_worker("w1")
    base_url = await inproc.start_client(directory_ttl_s=0.0)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]

    old_worker_cert = worker.credentials.certificate
    await worker.renew_certificate()
    new_worker_cert = worker.credentials.certificate
    assert new_worker_cert != old_worker_cert

    # The proxy hands clients the renewed worker certificate.
    entry = proxy.router.workers[worker.credentials.key_id]
    for _ in range(100):
        if entry.channel.peer.der == new_worker_cert:
            break
        await asyncio.sleep(0.01)  # bounded poll: the Renew frame is in flight
    assert entry.channel.peer.der == new_worker_cert
    assert inproc.session is not None
    workers = await inproc.session.workers(refresh=True)
    assert [w.key_id for w in workers] == [worker.credentials.key_id]

    old_proxy_cert = proxy.credentials.certificate
    await proxy.renew_certificate()
    await inproc.session.renew_certificate()
    assert proxy.credentials.certificate != old_proxy_cert
    answer = await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert answer.choices[0].message.content

    # A worker connecting now sees the renewed proxy certificate and passes.
    late = await inproc.start_worker("w2")
    assert late.channel is not None and late.channel.peer.der == proxy.credentials.certificate
    await client.close()
