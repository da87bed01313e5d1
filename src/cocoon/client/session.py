"""The client's session with one proxy: the connection, and the requests sent over it.

`ProxySession` keeps one authenticated connection to the proxy (reconnecting
by itself), seals each request to k verified workers and sends it, paying what
each receipt proves. The directory is kept in `proxy_directory`, the workers a
request goes to are found in `model_routing`, envelopes are made in `calls`,
answer frames are opened in `answer_opening`, and `receipt_paying` says when a
receipt is paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable

import msgspec

from ..audit.reputation import Reputation
from ..config import ClientConfig, split_address
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt
from ..crypto.sealing import SealSessions
from ..inference import AnswerChunk, GenerationRequest
from ..node import NodeCredentials, peer_policy
from ..payments.sides import PayerSide
from ..registry.follower import RootFollower
from ..registry.rules import Refusal
from ..tee.model_id import ModelPins
from ..wire.dialer import Dialer
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import (
    AnswerEnd,
    Directory,
    Error,
    Invoice,
    Message,
    PaymentState,
    PaymentTerms,
    Report,
    Request,
)
from ..wire.transport import AnswerStream, Channel
from .answer_opening import AnswerOpening
from .calls import AnswerResult, RecentCalls, SealedCall, seal_call, sealed_before, track_answer
from .choosing import PLAIN, Selection
from .directory import VerifiedWorker, WorkerVerifier, served_models
from .errors import ClientError, ProxyLost
from .limits import check_payload_size
from .model_routing import route
from .paying import ProxyPayments
from .proxy_directory import ProxyDirectory
from .receipt_paying import ReceiptPaying
from .request_ids import new_request_id
from .root_view import RootView

log = logging.getLogger(__name__)

_payload_encoder = msgspec.msgpack.Encoder()
# How long a request waits for the proxy connection to come back.
CONNECT_WAIT_S = 10.0
# Pause before resending to a proxy that has just come back without workers.
RESEND_DELAY_S = 0.2


class ProxySession:
    """The client's connection to its proxy, and everything done over it."""

    def __init__(
        self,
        config: ClientConfig,
        credentials: NodeCredentials,
        payer: PayerSide | None = None,
        *,
        address: str | None = None,
        verifier: WorkerVerifier | None = None,
        results: OrderedDict[str, AnswerResult] | None = None,
        follower: RootFollower | None = None,
        root_view: RootView | None = None,
        admit_proxy: Callable[[Channel], Awaitable[Refusal | None]] | None = None,
        reputation: Reputation | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.address = address or config.proxy
        # The root contract, when followed: workers it does not allow are left out.
        self.follower = follower
        self.root_view = root_view
        self._admit_proxy = admit_proxy
        # The client's own reputation of workers: who may be a candidate (shared by a pool).
        self.reputation = reputation
        # Set by a pool of several proxies: a lost proxy is left to the pool, which
        # sends the request through another one, instead of waiting for it here.
        self.failover = False
        # Measured by the pool: first-chunk latency (moving average) and requests open.
        self.latency_ms = 0.0
        self.open_requests = 0
        self.proxy_refusal = ""
        # Since when this proxy has not been usable (None while connected).
        self.down_since: float | None = time.monotonic()
        # With payments on: the channel to the proxy, ready once the proxy took it.
        self.payer = payer
        self.payments = ProxyPayments(payer, config, credentials, follower)
        # Owe what a receipt proves (an attribute, so that tests can hold payments back).
        self._pay = self.payments.pay
        self.policy = peer_policy(config.network, config.tee.allow_untrusted, config.tee)
        self.verifier = verifier or WorkerVerifier(
            self.policy, ModelPins.parse(config.pinned_models)
        )
        # One seal session per worker: an HPKE encapsulation per worker, not per request.
        self.sealing = SealSessions(config.network)
        self.channel: Channel | None = None
        self.connected = asyncio.Event()
        self.directory = ProxyDirectory(
            self.verifier, self.sealing, root_view, config.directory_ttl_s, CONNECT_WAIT_S
        )
        self._recent = RecentCalls()
        self.results: OrderedDict[str, AnswerResult] = (
            results if results is not None else OrderedDict()
        )
        proxy_host, proxy_port = split_address(self.address)
        self.dialer = Dialer(
            proxy_host,
            proxy_port,
            local=lambda: credentials.local,
            policy=self.policy,
            accept_roles=frozenset({"proxy"}),
            peer_name="proxy",
        )

    # -- connection ----------------------------------------------------------

    async def run(self) -> None:
        """Keep the proxy connection up until stopped."""
        await self.dialer.run(self._session)

    @property
    def reconnects(self) -> int:
        return self.dialer.reconnects

    async def _session(self, channel: Channel) -> None:
        refusal = await self._admit_proxy(channel) if self._admit_proxy is not None else None
        if refusal is not None:
            self.proxy_refusal = str(refusal)
            # Asked again after the root's next poll, not in a tight loop.
            wait_s = self.follower.poll_interval_s if self.follower else 1.0
            await self.dialer.refuse(channel, refusal.reason, str(refusal), wait_s)
            return
        self.proxy_refusal = ""
        self.channel = channel
        self.directory.fetched_at = 0.0
        self.down_since = None
        self.connected.set()
        await channel.run(self._on_message)
        self.connected.clear()
        self.down_since = time.monotonic()
        self.payments.detach(channel)
        self.channel = None
        self.directory.lost()

    async def renew_certificate(self) -> None:
        """Issue a fresh certificate and show it to the proxy."""
        certificate = self.credentials.renew()
        if self.channel is not None:
            await self.channel.renew(certificate)

    async def stop(self) -> None:
        """The client stops: every channel's vouchers leave, then the connection closes."""
        self.dialer.stop()
        self.payments.stop()
        if self.channel is not None:
            await self.channel.close()

    async def drop(self) -> None:
        """This proxy alone is let go (the pool uses others): what its channel owes
        leaves, the payer keeps paying the rest on its cadence."""
        self.dialer.stop()
        self.payments.flush()
        if self.channel is not None:
            await self.channel.close()

    async def _channel(self) -> Channel:
        """The live proxy connection, waiting a bounded time for a reconnect."""
        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:
            channel = self.channel
            if channel is not None and not channel.closed:
                return channel
            if self.failover:
                raise ProxyLost(f"proxy {self.address} is not connected")
            # The old channel may be closed before `run` has noticed; wait for
            # `run` to install the next one.
            self.connected.clear()
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self.connected.wait(), max(0.0, remaining))
            except TimeoutError as exc:
                raise ClientError("proxy_unavailable", "the proxy is not reachable", True) from exc

    async def _paying_channel(self) -> Channel:
        """The live proxy connection, once it has taken our payment channel (if payments
        are on)."""
        channel = await self._channel()
        if self.payer is None or self.payments.ready.is_set():
            return channel
        try:
            await asyncio.wait_for(self.payments.ready.wait(), CONNECT_WAIT_S)
        except TimeoutError:
            raise ClientError(
                "payment_required",
                self.payments.problem or "the payment channel to the proxy is not ready",
                True,
            ) from None
        return await self._channel()

    async def _on_message(self, channel: Channel, message: Message) -> None:
        if isinstance(message, Directory):
            await self.directory.on_directory(message)
        elif isinstance(message, PaymentTerms):
            self.payments.on_terms(channel, message)
        elif isinstance(message, PaymentState):
            self.payments.on_state(message)
        elif isinstance(message, Invoice):
            self.payments.on_invoice(channel, message)
        elif isinstance(message, Error) and not message.request_id:
            self.payments.problem = f"{message.code}: {message.message}"
            log.warning("proxy: %s", self.payments.problem)

    async def send_report(self, report: bytes) -> bool:
        """Hand a signed report of a failed audit to this proxy; whether it went."""
        channel = self.channel
        if channel is None or channel.closed:
            return False
        try:
            await channel.send(Report(report))
        except WireError:
            return False
        return True

    # -- payments ------------------------------------------------------------

    def payments_status(self) -> dict[str, object] | None:
        return self.payments.status()

    @property
    def pay_channel(self) -> str | None:
        return self.payments.channel

    @property
    def _top_up(self) -> asyncio.Task[bool] | None:
        return self.payments.top_up

    async def reinstall(self) -> None:
        """The root changed: install the last directory again under the new rules."""
        await self.directory.reinstall()

    # -- directory -----------------------------------------------------------

    async def workers(self, refresh: bool = False) -> list[VerifiedWorker]:
        """Verified workers of every model, refreshed after `directory_ttl_s`."""
        return await self.directory.fetch(self._channel, refresh)

    async def models(self) -> list[str]:
        return served_models(await self.workers())

    # -- requests ------------------------------------------------------------

    def new_request_id(self) -> str:
        return new_request_id()

    async def seal(
        self,
        request_id: str,
        generation: GenerationRequest,
        *,
        moved: bool = False,
        selection: Selection = PLAIN,
    ) -> SealedCall:
        """Seal a request to k verified workers of its model (or reuse a retry's envelope).

        `moved`: the request failed over from another proxy that delivered nothing; it
        is now expected (and paid) on this proxy's channel."""
        plaintext_request = _payload_encoder.encode(generation)
        # Before anything is sealed or recorded: the sealed request must fit a frame.
        check_payload_size(len(plaintext_request))
        digest = sha256(plaintext_request)
        recent = sealed_before(self._recent, request_id, digest)
        if recent is not None:
            return recent
        generation, chosen = await route(self, generation, selection)
        call = seal_call(
            request_id,
            generation,
            chosen,
            digest,
            selection,
            self.config,
            self.sealing,
            self.follower.version if self.follower is not None else 0,
        )
        if self.payer is not None:
            channel = await self._paying_channel()
            signers = [w.public_key for w in chosen]
            call.request = await self.payments.record(
                call.request, call.request_hash, signers, moved, channel
            )
        return self._recent.keep(request_id, call)

    def track(self, request_id: str) -> AnswerResult:
        """Start recording what is learned about one answer (worker, receipt)."""
        return track_answer(self.results, request_id)

    async def answer(
        self, call: SealedCall, result: AnswerResult
    ) -> AsyncGenerator[AnswerChunk, None]:
        """Send a sealed request; yield its opened chunks; the last carries finish and usage.

        A proxy connection lost before the first chunk is retried with the
        same envelope (the proxy runs and bills a request id once).
        """
        request = call.request
        deadline = time.monotonic() + CONNECT_WAIT_S
        resent = False
        paying = ReceiptPaying(
            (lambda receipt, first: self._pay_for(request, receipt, first))
            if self.payer is not None
            else None
        )
        while True:
            channel = await self._paying_channel()
            opening = AnswerOpening(call, result, self.config)
            stream: AnswerStream | None = None
            delivered = False
            try:
                stream = channel.request(request)
                async for frame in stream:
                    final = isinstance(frame, AnswerEnd)
                    chunk = opening.open(frame)
                    if frame.receipt is not None and paying.due(final):
                        opening.check_held()
                        # Owed lazily: lost in a crash, the debt comes back as the
                        # proxy's invoice, paid against the request's record or tag.
                        paying.pay(result.receipt)
                    delivered = True
                    yield chunk
                    if final:
                        if result.receipt is None or not result.receipt.final:
                            raise ClientError("bad_receipt", "the answer ended without a receipt")
                        return
                raise ClientError("bad_answer", "the answer ended without a final chunk")
            except PeerError as exc:
                if resent and exc.retryable and not delivered and time.monotonic() < deadline:
                    # A proxy that just restarted may not have its workers back
                    # yet (no_capacity, model_not_found): give them a moment.
                    log.info("%s resent too early (%s); again", request.request_id, exc.code)
                    await asyncio.sleep(RESEND_DELAY_S)
                    continue
                raise ClientError(exc.code, exc.message, exc.retryable) from exc
            except ConnectionClosed as exc:
                if self.failover:
                    # The pool decides: another proxy, if the app has seen nothing yet.
                    where = "in the middle of" if delivered else "before"
                    raise ProxyLost(f"lost proxy {self.address} {where} the answer") from exc
                if delivered or time.monotonic() > deadline:
                    raise ClientError(
                        "proxy_unavailable", "lost the proxy in the middle of the answer"
                    ) from exc
                log.info("proxy lost before %s was answered; resending", request.request_id)
                resent = True
                continue
            finally:
                if stream is not None:
                    await stream.cancel()
                if opening.held is not None:
                    # Cut short: the latest partial receipt is what counts now.
                    with contextlib.suppress(ClientError):
                        opening.check_held()
                # Cut short: pay what the last receipt we accepted proves.
                with contextlib.suppress(ClientError):
                    paying.pay(result.receipt)

    def _pay_for(self, request: Request, receipt: Receipt, first: bool) -> None:
        """Owe what `receipt` proves, at the prices of the request's root version and tier
        (`first`: the answer's first receipt paid)."""
        prices = self.payments.prices_at(request.root_version, request.tier, request.replicas)
        amount = self._pay(request.request_id, receipt, first=first, prices=prices)
        result = self.results.get(request.request_id)
        if result is not None and amount is not None:
            result.amount_nano, result.channel = amount, self.payments.channel or ""
            result.prices = prices
