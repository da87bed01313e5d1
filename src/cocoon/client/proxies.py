"""The proxies a client uses: one carries each request, the others stay warm.

Proxies come from the root contract (``proxies = ["root"]``: every proxy it
registers, by endpoint and node key) or from the configuration (fixed
addresses, for private networks). The pool holds up to `max_proxies`
connections at once, one `ProxySession` each, and sends every request
through one of the connected proxies, picked at random with weight
1 / (latency * (1 + open requests)): the faster and less loaded proxy takes
most traffic, and the others keep being measured.

Failover: a request whose proxy goes away before the first answer chunk is
sealed again for the next connected proxy's workers, with the same request
id, and sent there. Payments follow receipts only: each proxy is paid on its
own channel for what its workers' receipts prove, and the request's expected
payee moves with it, so the first proxy's invoice for it (if its worker ever
finished) is refused.

Root rules for proxies: a proxy the root does not register under the key it
presents, or whose attested image it does not list, is refused
(`proxy_not_on_root`, `image_not_on_root`) and closed when the root changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator

from ..audit.reputation import Reputation
from ..config import ClientConfig
from ..inference import AnswerChunk, GenerationRequest
from ..node import NodeCredentials, peer_policy
from ..payments.sides import PayerSide
from ..recent import remember
from ..registry.follower import RegistryError, RootFollower
from ..registry.rules import (
    ROOT_REASONS,
    STAKE_UNKNOWN,
    Refusal,
    RootRules,
    wanted_proxies,
)
from ..tee.model_id import ModelPins
from ..wire.transport import Channel
from .calls import RECENT_REQUESTS, AnswerResult, SealedCall, track_answer
from .choosing import PLAIN, Selection
from .directory import VerifiedWorker, WorkerVerifier, served_models
from .errors import ClientError, ProxyLost
from .proxy_choice import connected_sessions, cost, observe, pick
from .request_ids import new_request_id
from .root_view import RootView
from .session import ProxySession

log = logging.getLogger(__name__)

# A held proxy unreachable this long gives way to a registered one not held.
DOWN_GRACE_S = 10.0
# How often the held proxies are reconsidered.
REBALANCE_S = 2.0


class ProxyPool:
    """Several proxy sessions behind the one interface the gateway uses."""

    def __init__(
        self,
        config: ClientConfig,
        credentials: NodeCredentials,
        payer: PayerSide | None = None,
        follower: RootFollower | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.payer = payer
        self.follower = follower
        self._rng = rng or random.Random()
        policy = peer_policy(config.network, config.tee.allow_untrusted, config.tee)
        # One verifier and one record of answers across proxies: a worker serving
        # several proxies is verified once, a receipt is found whichever proxy carried it.
        self.verifier = WorkerVerifier(policy, ModelPins.parse(config.pinned_models))
        self.results: OrderedDict[str, AnswerResult] = OrderedDict()
        self.root_view = RootView(follower, self.verifier.refused) if follower else None
        self.sessions: dict[str, ProxySession] = {}
        self._node_keys: dict[str, bytes | None] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sealed_by: OrderedDict[str, ProxySession] = OrderedDict()
        self._running = False
        self.failovers = 0
        # The client's own reputation of workers, from its audits and their answers.
        self.reputation = Reputation(
            threshold=config.audit.threshold, half_life_s=config.audit.half_life_s
        )
        self._update(follower.rules if follower is not None else None)
        if follower is not None:
            follower.on_change(self._on_root_change)

    # -- which proxies -------------------------------------------------------

    def _wanted(self, rules: RootRules | None) -> dict[str, bytes | None]:
        # Keep the ones held; fill up from the rest in random order; a held one
        # unreachable for a while gives way to one not tried yet.
        wanted = wanted_proxies(
            self.config.proxies,
            self.config.proxy,
            rules,
            order=lambda p: (self._rank(p.endpoint), self._rng.random()),
        )
        return dict(list(wanted.items())[: self.config.max_proxies])

    def _rank(self, endpoint: str) -> int:
        session = self.sessions.get(endpoint)
        if session is None:
            return 1
        down = session.down_since
        return 2 if down is not None and time.monotonic() - down > DOWN_GRACE_S else 0

    def _update(self, rules: RootRules | None) -> list[ProxySession]:
        """Add sessions for newly wanted proxies; the sessions no longer wanted."""
        wanted = self._wanted(rules)
        dropped = [s for address, s in self.sessions.items() if address not in wanted]
        for session in dropped:
            del self.sessions[session.address]
        for address, node_key in wanted.items():
            self._node_keys[address] = node_key
            if address in self.sessions:
                continue
            session = ProxySession(
                self.config,
                self.credentials,
                self.payer,
                address=address,
                verifier=self.verifier,
                results=self.results,
                follower=self.follower,
                root_view=self.root_view,
                admit_proxy=functools.partial(self._admit, address),
                reputation=self.reputation,
            )
            self.sessions[address] = session
            if self._running:
                self._tasks[address] = asyncio.create_task(session.run())
        failover = len(self.sessions) > 1
        for session in self.sessions.values():
            session.failover = failover
        return dropped

    async def _admit(self, address: str, channel: Channel) -> Refusal | None:
        """The root's word on a proxy we connected to: registered under the key it
        presents, its image listed, its stake at the root's minimum."""
        if self.follower is None:
            return None
        rules = self.follower.rules
        node_key = self._node_keys.get(address)
        refusal = rules.reached_proxy_refusal(
            address, node_key, channel.peer.public_key, channel.verdict
        )
        if refusal is not None or node_key is None or not self.follower.check_stakes:
            return refusal
        registered = rules.registered_proxy(node_key)
        assert registered is not None  # else reached_proxy_refusal refused it
        try:
            stake = await self.follower.stake(registered.wallet, node_key)
        except RegistryError as exc:
            return Refusal(STAKE_UNKNOWN, str(exc))
        return rules.stake_refusal("proxy", stake)

    async def _on_root_change(self, rules: RootRules) -> None:
        if self.root_view is not None:
            await self.root_view.rejudge(self.verifier.known())
        await self._rehold(rules, "is no longer on the root")
        for session in list(self.sessions.values()):
            channel = session.channel
            if channel is not None:
                refusal = await self._admit(session.address, channel)
                if refusal is not None:
                    log.warning("closing proxy %s: %s", session.address, refusal)
                    session.proxy_refusal = str(refusal)
                    await channel.close()
            await session.reinstall()

    async def _rehold(self, rules: RootRules, why: str) -> None:
        """Hold the proxies wanted now; let go of the others."""
        for session in self._update(rules):
            log.info("proxy %s %s: letting it go", session.address, why)
            await self._stop_session(session)

    async def _stop_session(self, session: ProxySession) -> None:
        await session.drop()
        task = self._tasks.pop(session.address, None)
        if task is not None:
            task.cancel()

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        """Keep every held proxy connection up until stopped."""
        self._running = True
        for address, session in self.sessions.items():
            self._tasks[address] = asyncio.create_task(session.run())
        try:
            while True:
                await asyncio.sleep(REBALANCE_S)
                if self.follower is not None:
                    await self._rehold(self.follower.rules, "stays unreachable")
        finally:
            for task in self._tasks.values():
                task.cancel()

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            await session.stop()

    async def renew_certificate(self) -> None:
        certificate = self.credentials.renew()
        for session in self.sessions.values():
            if session.channel is not None:
                await session.channel.renew(certificate)

    # -- choosing a proxy ----------------------------------------------------

    @property
    def primary(self) -> ProxySession | None:
        """The connected proxy most likely to carry the next request."""
        connected = connected_sessions(self.sessions.values())
        if not connected:
            return None
        return min(connected, key=cost)

    @property
    def channel(self) -> Channel | None:
        primary = self.primary
        return primary.channel if primary is not None else None

    async def _session(self) -> ProxySession:
        session = await pick(self.sessions.values(), self._rng)
        if session is None:
            raise ClientError("proxy_unavailable", "no proxy is reachable", True)
        return session

    # -- what the gateway asks -----------------------------------------------

    def new_request_id(self) -> str:
        return new_request_id()

    async def workers(self, refresh: bool = False) -> list[VerifiedWorker]:
        """The workers of every connected proxy (one proxy may not have them all yet)."""
        connected = connected_sessions(self.sessions.values())
        if len(connected) <= 1:
            return await (await self._session()).workers(refresh)
        found = await asyncio.gather(
            *(s.workers(refresh) for s in connected), return_exceptions=True
        )
        merged: dict[bytes, VerifiedWorker] = {}
        for workers in found:
            if isinstance(workers, BaseException):
                continue
            for worker in workers:
                merged.setdefault(worker.public_key, worker)
        if not merged and isinstance(found[0], BaseException):
            raise found[0]
        return list(merged.values())

    async def models(self) -> list[str]:
        return served_models(await self.workers())

    async def seal(
        self, request_id: str, generation: GenerationRequest, selection: Selection = PLAIN
    ) -> SealedCall:
        session = self._sealed_by.get(request_id)
        if session is not None and session.address in self.sessions:
            # A retry: the same proxy.
            return await session.seal(request_id, generation, selection=selection)
        session = await self._session()
        try:
            call = await session.seal(request_id, generation, selection=selection)
        except ClientError as exc:
            # This proxy has no worker for the model (yet, or any more): another may.
            others = connected_sessions(self.sessions.values(), exclude={session.address})
            if exc.code not in _ELSEWHERE or not others:
                raise
            session = min(others, key=cost)
            call = await session.seal(request_id, generation, selection=selection)
        remember(self._sealed_by, request_id, session, RECENT_REQUESTS)
        return call

    async def send_report(self, report: bytes) -> int:
        """Send a signed report to every connected proxy; how many took it."""
        sent = await asyncio.gather(
            *(s.send_report(report) for s in connected_sessions(self.sessions.values()))
        )
        return sum(sent)

    def paid_to(self, worker_key: bytes) -> int:
        """What this client has paid a worker, through every proxy (nanotons)."""
        return sum(s.payments.paid_to.get(worker_key, 0) for s in self.sessions.values())

    def track(self, request_id: str) -> AnswerResult:
        """Start recording what is learned about one answer (worker, receipt)."""
        return track_answer(self.results, request_id)

    def answer(self, call: SealedCall, result: AnswerResult) -> AsyncGenerator[AnswerChunk, None]:
        """The answer through the proxy that sealed it; with one proxy, that session's own
        answer (there is nowhere to fail over to: no layer in between, per chunk)."""
        session = self._sealed_by.get(call.request.request_id)
        if session is not None and len(self.sessions) == 1:
            return session.answer(call, result)
        return self._answer_failing_over(call, result)

    async def _answer_failing_over(
        self, call: SealedCall, result: AnswerResult
    ) -> AsyncGenerator[AnswerChunk, None]:
        """The answer through the proxy that sealed it; through another, sealed again for
        its workers, if that proxy is lost (or fails it) before the app got anything.

        A non-streamed answer reaches the app only whole, so its chunks are held
        until the last: a proxy lost in the middle of it is still a failover, not
        an error (the first proxy is paid what its worker's last receipt proves)."""
        request_id = call.request.request_id
        session = self._sealed_by.get(request_id) or await self._session()
        held = call.generation is not None and not call.generation.stream
        tried: set[str] = set()
        shown = False
        while True:
            started = time.monotonic()
            first = True
            current = session
            current.open_requests += 1
            pending: list[AnswerChunk] = []
            try:
                async for chunk in session.answer(call, result):
                    if first:
                        first = False
                        observe(session, (time.monotonic() - started) * 1000)
                    if held:
                        pending.append(chunk)
                    else:
                        shown = True
                        yield chunk
                for chunk in pending:
                    yield chunk
                return
            except (ProxyLost, ClientError) as exc:
                lost = isinstance(exc, ProxyLost)
                if shown:
                    if lost:
                        raise ClientError(
                            "proxy_unavailable", "lost the proxy in the middle of the answer"
                        ) from exc
                    raise
                if isinstance(exc, ClientError) and not _worth_another_proxy(exc):
                    raise
                tried.add(session.address)
                following = await pick(self.sessions.values(), self._rng, tried)
                if following is None or call.generation is None:
                    if lost:
                        raise ClientError("proxy_unavailable", str(exc), True) from exc
                    raise
                log.warning(
                    "%s: %s; sending it through proxy %s", request_id, exc, following.address
                )
                self.failovers += 1
                if lost:
                    session.latency_ms = max(session.latency_ms, 1.0) * 4  # ranks it low
                # What the first proxy's worker signed is settled with that proxy; the
                # answer and its receipts start anew with the next.
                result.worker, result.receipt, result.receipt_bytes = None, None, None
                call = await following.seal(
                    request_id, call.generation, moved=True, selection=call.selection
                )
                self._sealed_by[request_id] = following
                session = following
            finally:
                current.open_requests -= 1

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.sessions.values())


# What one proxy may not have while another does.
_ELSEWHERE = frozenset({"model_not_found", "no_capacity"})


def _worth_another_proxy(error: ClientError) -> bool:
    """A retryable failure of this proxy's path, not one every proxy would give (the
    root's refusals hold everywhere; a bad request is bad everywhere)."""
    return error.retryable and error.code not in ROOT_REASONS
