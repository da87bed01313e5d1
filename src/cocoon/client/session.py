"""The client's session with its proxy: directory, sealing, answers, receipts.

`ProxySession` keeps one authenticated connection to the proxy (reconnecting
by itself), learns and verifies workers, seals each request to k of them,
and turns the sealed answer frames back into `AnswerChunk`s while checking
every receipt against what actually arrived.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import msgspec

from ..config import ClientConfig, split_address
from ..crypto.answer_stream import AnswerOpener
from ..crypto.errors import CryptoError, ReceiptError, StreamError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..crypto.sealing import seal_request
from ..inference import AnswerChunk, GenerationRequest, SealedPayload, chunk_decoder
from ..node import NodeCredentials, peer_policy
from ..tee.model_id import ModelPins
from ..wire.dialer import Dialer
from ..wire.errors import ConnectionClosed, PeerError, WireError
from ..wire.messages import (
    DIRECTORY_PUSH,
    AnswerEnd,
    Directory,
    DirectoryRequest,
    Message,
    Request,
)
from ..wire.transport import AnswerStream, Channel
from .directory import (
    VerifiedWorker,
    WorkerVerifier,
    choose_candidates,
    resolve_model,
    served_models,
)

log = logging.getLogger(__name__)

_payload_encoder = msgspec.msgpack.Encoder()
# How long a request waits for the proxy connection to come back.
CONNECT_WAIT_S = 10.0
# Pause before resending to a proxy that has just come back without workers.
RESEND_DELAY_S = 0.2
RECENT_REQUESTS = 4096


class ClientError(Exception):
    """A request failed; `code` follows the wire's error codes."""

    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass
class SealedCall:
    """One request as sealed: kept so that a retry resends the very same envelope."""

    request: Request
    response_key: bytes
    candidates: dict[bytes, VerifiedWorker]
    # Digest of the request as the app sent it: a retry must be the same request.
    request_digest: bytes
    created: float = field(default_factory=time.time)


@dataclass
class AnswerResult:
    """What the client learned about one answer: who served it, and its receipt."""

    request_id: str
    worker: VerifiedWorker | None = None
    receipt: Receipt | None = None
    receipt_bytes: bytes | None = None


class ProxySession:
    """The client's connection to its proxy, and everything done over it."""

    def __init__(self, config: ClientConfig, credentials: NodeCredentials) -> None:
        self.config = config
        self.credentials = credentials
        self.policy = peer_policy(config.network, config.tee.allow_untrusted, config.tee)
        self.verifier = WorkerVerifier(self.policy, ModelPins.parse(config.pinned_models))
        self.channel: Channel | None = None
        self._connected = asyncio.Event()
        self._dir_seq = 0
        self._dir_waiters: dict[int, asyncio.Future[Directory]] = {}
        self._directory: list[VerifiedWorker] = []
        self._directory_at = 0.0
        self._directory_lock = asyncio.Lock()
        self._recent: OrderedDict[str, SealedCall] = OrderedDict()
        self.results: OrderedDict[str, AnswerResult] = OrderedDict()
        proxy_host, proxy_port = split_address(config.proxy)
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
        self.channel = channel
        self._directory_at = 0.0
        self._connected.set()
        await channel.run(self._on_message)
        self._connected.clear()
        self.channel = None
        for waiter in self._dir_waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionClosed("proxy connection lost"))
        self._dir_waiters.clear()

    async def renew_certificate(self) -> None:
        """Issue a fresh certificate and show it to the proxy."""
        certificate = self.credentials.renew()
        if self.channel is not None:
            await self.channel.renew(certificate)

    async def stop(self) -> None:
        self.dialer.stop()
        if self.channel is not None:
            await self.channel.close()

    async def _channel(self) -> Channel:
        """The live proxy connection, waiting a bounded time for a reconnect."""
        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:
            channel = self.channel
            if channel is not None and not channel.closed:
                return channel
            # The old channel may be closed before `run` has noticed; wait for
            # `run` to install the next one.
            self._connected.clear()
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._connected.wait(), max(0.0, remaining))
            except TimeoutError as exc:
                raise ClientError("proxy_unavailable", "the proxy is not reachable", True) from exc

    async def _on_message(self, channel: Channel, message: Message) -> None:
        if isinstance(message, Directory):
            if message.seq == DIRECTORY_PUSH:
                # The proxy tells us when workers join or leave, so a new
                # worker gets traffic at once, not after the cache expires.
                self._install_directory(message)
                return
            waiter = self._dir_waiters.pop(message.seq, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def _install_directory(self, directory: Directory) -> list[VerifiedWorker]:
        now = int(time.time())
        verified = [self.verifier.verify(entry, now) for entry in directory.workers]
        self._directory = [w for w in verified if w is not None]
        self._directory_at = time.monotonic()
        return self._directory

    # -- directory -----------------------------------------------------------

    async def workers(self, refresh: bool = False) -> list[VerifiedWorker]:
        """Verified workers of every model, refreshed after `directory_ttl_s`."""
        if not refresh and time.monotonic() - self._directory_at < self.config.directory_ttl_s:
            return self._directory
        async with self._directory_lock:
            if not refresh and time.monotonic() - self._directory_at < self.config.directory_ttl_s:
                return self._directory
            channel = await self._channel()
            self._dir_seq += 1
            seq = self._dir_seq
            waiter: asyncio.Future[Directory] = asyncio.get_running_loop().create_future()
            self._dir_waiters[seq] = waiter
            try:
                await channel.send(DirectoryRequest(seq, ""))
                directory = await asyncio.wait_for(waiter, CONNECT_WAIT_S)
            except (WireError, TimeoutError) as exc:
                raise ClientError("proxy_unavailable", f"directory request failed: {exc}") from exc
            finally:
                self._dir_waiters.pop(seq, None)
            return self._install_directory(directory)

    async def models(self) -> list[str]:
        return served_models(await self.workers())

    # -- requests ------------------------------------------------------------

    def new_request_id(self) -> str:
        return uuid.uuid4().hex

    async def seal(self, request_id: str, generation: GenerationRequest) -> SealedCall:
        """Seal a request to k verified workers of its model (or reuse a retry's envelope)."""
        plaintext_request = _payload_encoder.encode(generation)
        digest = sha256(plaintext_request)
        recent = self._recent.get(request_id)
        if recent is not None:
            if recent.request_digest != digest:
                raise ClientError(
                    "duplicate_request_id",
                    f"request id {request_id} was already used for a different request",
                )
            return recent
        workers = await self.workers()
        model = resolve_model(workers, generation.model)
        if model is None:
            workers = await self.workers(refresh=True)
            model = resolve_model(workers, generation.model)
        if model is None:
            raise ClientError("model_not_found", f"the model `{generation.model}` does not exist")
        if model != generation.model:
            # A bare name asked for: route and seal on the full id accepted.
            generation = msgspec.structs.replace(generation, model=model)
        chosen = choose_candidates(
            workers, generation.model, self.config.max_coefficient_milli, self.config.candidates
        )
        if not chosen:
            raise ClientError(
                "no_capacity", "no worker of this model is within max_coefficient", True
            )
        response_key = os.urandom(32)
        payload = SealedPayload(
            request_id=request_id, request=generation, response_key=response_key
        )
        sealed = seal_request(
            _payload_encoder.encode(payload),
            [w.recipient for w in chosen],
            request_id,
            self.config.network,
        )
        request = Request(
            request_id=request_id,
            model=generation.model,
            max_coefficient_milli=self.config.max_coefficient_milli,
            max_tokens=generation.max_tokens or 0,
            timeout_ms=int(self.config.request_timeout_s * 1000),
            candidates=[w.key_id for w in chosen],
            sealed=sealed,
        )
        call = SealedCall(request, response_key, {w.public_key: w for w in chosen}, digest)
        self._recent[request_id] = call
        while len(self._recent) > RECENT_REQUESTS:
            self._recent.popitem(last=False)
        return call

    def track(self, request_id: str) -> AnswerResult:
        """Start recording what is learned about one answer (worker, receipt)."""
        result = AnswerResult(request_id)
        self.results[request_id] = result
        while len(self.results) > RECENT_REQUESTS:
            self.results.popitem(last=False)
        return result

    async def answer(
        self, call: SealedCall, result: AnswerResult
    ) -> AsyncGenerator[AnswerChunk, None]:
        """Send a sealed request; yield its opened chunks; the last carries finish and usage.

        A proxy connection lost before the first chunk is retried with the
        same envelope (the proxy runs and bills a request id once).
        """
        request = call.request
        request_hash = sha256(request.sealed)
        deadline = time.monotonic() + CONNECT_WAIT_S
        resent = False
        while True:
            channel = await self._channel()
            opener = AnswerOpener(call.response_key, request.request_id)
            stream: AnswerStream | None = None
            delivered = False
            try:
                stream = channel.request(request)
                async for frame in stream:
                    final = isinstance(frame, AnswerEnd)
                    try:
                        plaintext = opener.open(frame.index, frame.sealed, final=final)
                        chunk = chunk_decoder.decode(plaintext)
                    except (StreamError, msgspec.DecodeError) as exc:
                        raise ClientError("bad_answer", f"answer failed to open: {exc}") from exc
                    if frame.receipt is not None:
                        self._check_receipt(frame.receipt, call, request_hash, opener, result)
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

    def _check_receipt(
        self,
        data: bytes,
        call: SealedCall,
        request_hash: bytes,
        opener: AnswerOpener,
        result: AnswerResult,
    ) -> None:
        try:
            receipt = verify_receipt(data, self.config.network)
        except CryptoError as exc:
            raise ClientError("bad_receipt", f"receipt does not verify: {exc}") from exc
        worker = call.candidates.get(receipt.worker_key)
        problem = ""
        if worker is None:
            problem = "signed by a worker the request was not sealed to"
        elif receipt.request_id != call.request.request_id or receipt.request_hash != request_hash:
            problem = "for another request"
        elif receipt.answer_hash != opener.digest() or receipt.answer_chunks != opener.index:
            problem = "does not match the answer received"
        elif not receipt.final and receipt.completion_tokens > opener.index:
            problem = "claims more tokens than chunks were delivered"
        elif receipt.coefficient_milli > call.request.max_coefficient_milli:
            problem = "states a price coefficient above the client's bound"
        elif result.receipt is not None and receipt.seq <= result.receipt.seq:
            problem = "replayed"
        if problem:
            raise ClientError("bad_receipt", f"receipt {problem}") from ReceiptError(problem)
        result.worker = worker
        result.receipt = receipt
        result.receipt_bytes = data
