"""The proxies a worker serves: one connection each, kept up by a dialer.

A worker may serve several proxies at once (`WorkerConfig.proxies`): each
gets its own connection, announce and payment channel; capacity, the
backend and the HPKE key are shared. With ``"root"`` among them the set
follows the root contract's registered proxies: a proxy the root adds is
dialled within one poll, one it removes is dropped, and requests running on
it are cancelled with the connection (which proxies: registry.rules.wanted_proxies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..config import split_address
from ..tee.policy import PeerPolicy
from ..wire.dialer import Dialer
from ..wire.handshake import LocalIdentity
from ..wire.transport import Channel


@dataclass(eq=False)
class ProxyLink:
    """One proxy this worker serves: its dialer, live connection and payment channel."""

    address: str
    dialer: Dialer
    # The proxy's node key when the root registered it (checked after the handshake).
    node_key: bytes | None = None
    channel: Channel | None = None
    pay_channel: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    runner: asyncio.Task[None] | None = None
    # Why the root made this worker drop the proxy ("" while it may serve it).
    dropped: str = ""

    def cancel_tasks(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()


class LinkSet:
    """The links of one worker, added and dropped as the wanted set changes."""

    def __init__(
        self,
        *,
        local: Callable[[], LocalIdentity],
        policy: PeerPolicy,
        session: Callable[[ProxyLink, Channel], Awaitable[None]],
    ) -> None:
        self._local = local
        self._policy = policy
        self._session = session
        self.links: dict[str, ProxyLink] = {}
        self._stopping = False

    def update(self, wanted: dict[str, bytes | None]) -> list[ProxyLink]:
        """Dial new proxies, drop the ones no longer wanted; the dropped links."""
        dropped = []
        for address in list(self.links):
            if address not in wanted:
                link = self.links.pop(address)
                link.dialer.stop()
                dropped.append(link)
        for address, node_key in wanted.items():
            if address in self.links:
                self.links[address].node_key = node_key
                continue
            host, port = split_address(address)
            dialer = Dialer(
                host,
                port,
                local=self._local,
                policy=self._policy,
                accept_roles=frozenset({"proxy"}),
                peer_name="proxy",
            )
            link = ProxyLink(address, dialer, node_key)
            self.links[address] = link
            if not self._stopping:
                link.runner = asyncio.create_task(self._run(link))
        return dropped

    async def _run(self, link: ProxyLink) -> None:
        await link.dialer.run(lambda channel: self._session(link, channel))

    async def close(self, link: ProxyLink) -> None:
        link.dialer.stop()
        link.cancel_tasks()
        if link.channel is not None:
            await link.channel.close()
        if link.runner is not None:
            link.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link.runner

    async def stop(self) -> None:
        self._stopping = True
        for link in list(self.links.values()):
            await self.close(link)
