"""Keeping one outgoing connection alive: connect, hand over, reconnect with backoff.

Workers and clients both dial their proxy and must survive its restarts; the
loop that does so lives here once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from ..tee.policy import PeerPolicy
from .endpoints import connect
from .errors import PeerError, ProtocolError, WireError
from .handshake import LocalIdentity
from .transport import Channel

log = logging.getLogger(__name__)

# The first retry comes soon (a proxy started beside its workers listens within
# a second or two), later ones back off to RECONNECT_MAX_S.
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 5.0


class Dialer:
    """Dials `address` until stopped; each established channel goes to `session`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        local: Callable[[], LocalIdentity],
        policy: PeerPolicy,
        accept_roles: frozenset[str],
        peer_name: str,
    ) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.local = local
        self.policy = policy
        self.accept_roles = accept_roles
        self.peer_name = peer_name
        self.reconnects = 0
        # Handshakes that failed on attestation or protocol grounds, by reason.
        self.refusals: collections.Counter[str] = collections.Counter()
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def refuse(self, channel: Channel, code: str, why: str, wait_s: float) -> None:
        """Close a channel whose peer we will not talk to (after the handshake, on
        grounds the handshake cannot see), count it, and wait before dialling again."""
        self.refusals[f"refused the {self.peer_name}: {code}"] += 1
        log.warning("refusing %s %s: %s", self.peer_name, self.address, why)
        await channel.close()
        await asyncio.sleep(wait_s)

    async def run(self, session: Callable[[Channel], Awaitable[None]]) -> None:
        """Run `session(channel)` for each connection; it returns when the channel ends."""
        delay = RECONNECT_MIN_S
        connected_before = False
        while not self._stopping:
            try:
                channel = await connect(
                    self.host,
                    self.port,
                    local=self.local(),
                    policy=self.policy,
                    accept_roles=self.accept_roles,
                )
            except PeerError as exc:
                # Refused, not unreachable: say so loudly, it will not fix itself.
                self.refusals[f"refused by the {self.peer_name}: {exc.code}"] += 1
                log.warning("%s %s refused us: %s", self.peer_name, self.address, exc)
                await asyncio.sleep(RECONNECT_MAX_S)
                continue
            except ProtocolError as exc:
                reason = getattr(exc, "reason", exc.code)
                self.refusals[f"refused the {self.peer_name}: {reason}"] += 1
                log.warning("refused %s %s: %s", self.peer_name, self.address, exc)
                await asyncio.sleep(RECONNECT_MAX_S)
                continue
            except (OSError, WireError, TimeoutError) as exc:
                log.info(
                    "%s %s not reachable (%s); retrying in %.1f s",
                    self.peer_name,
                    self.address,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_MIN_S
            if connected_before:
                self.reconnects += 1
            connected_before = True
            log.info(
                "connected to %s %s (%s, %s)",
                self.peer_name,
                self.address,
                channel.key_id,
                "trusted" if channel.verdict.trusted else "untrusted",
            )
            try:
                await session(channel)
            except Exception:
                # A session's own failure must not end the reconnect loop: the peer
                # would stay unused for the life of the process.
                log.exception("session with %s %s failed", self.peer_name, self.address)
                await channel.close()
                await asyncio.sleep(RECONNECT_MAX_S)
            if not self._stopping:
                log.warning(
                    "lost %s %s: %s; reconnecting",
                    self.peer_name,
                    self.address,
                    channel.close_reason,
                )
