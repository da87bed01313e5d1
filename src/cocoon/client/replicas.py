"""The `replicated` trust tier: one request run on three workers, the answer two agree on.

Each replica is its own sealed request (`<id>.r1` … `.r3`) to one chosen
worker, so no worker sees which others run it, and each is paid its own
receipt (the tier's multiplier is split among them, `registry.tiers`). A
sampled request without a seed gets one seed shared by the three, so that
honest workers of one model agree exactly, as greedy ones do.

The answer is streamed as soon as two replicas agree on it: chunk by chunk,
the longest prefix two of them share (and that extends what was already
sent). A replica that disagrees with the two that agree is the odd one out:
its worker loses reputation and its answer is audited, which yields a signed
report if it fails. If no two agree at all, the request fails with
`replicas_disagree`; nothing unagreed reaches the app.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import msgspec

from ..agent_api.answers import ToolCallAssembler
from ..agent_api.controls import needed_features
from ..audit.scores import ScoresError, unpack_scores
from ..audit.verdict import Sampling, judge
from ..inference import AnswerChunk, GenerationRequest, TokenLogprob, ToolCallDelta
from ..registry.tiers import REPLICAS, Tier
from .auditing import Auditor, ask
from .calls import AnswerResult
from .choosing import Selection, choose
from .errors import ClientError
from .proxies import ProxyPool

log = logging.getLogger(__name__)


@dataclass
class _Replica:
    worker: bytes
    result: AnswerResult
    text: str = ""
    final: AnswerChunk | None = None  # the last chunk, once it came
    done: bool = False
    error: ClientError | None = None
    # Its tool calls, joined (their ids are each worker's own, so not compared),
    # and its logprobs: they reach the app with the agreed answer's last chunk.
    calls: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def feed(self, chunk: AnswerChunk) -> None:
        self.text += chunk.text
        self.calls.feed(chunk.tool_calls)
        self.logprobs.extend(chunk.logprobs)
        if chunk.finish_reason is not None:
            self.final = chunk

    @property
    def ending(self) -> tuple[str, str | None, list[tuple[str, str]]] | None:
        """The whole answer (text and calls) and why it ended, once it has."""
        if self.final is None:
            return None
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in self.calls.calls()]
        return self.text, self.final.finish_reason, calls


def agreed(replicas: list[_Replica], sent: str) -> tuple[str, list[int]]:
    """The longest text two replicas share that extends `sent`, and which two. Text,
    not chunks: workers cut the same answer into chunks differently."""
    best, pair = "", []
    for i in range(len(replicas)):
        for j in range(i + 1, len(replicas)):
            a, b = replicas[i].text, replicas[j].text
            n = _common_prefix(a, b)
            if n >= len(sent) and a.startswith(sent) and n > len(best):
                best, pair = a[:n], [i, j]
    return best, pair


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def ended_alike(replicas: list[_Replica]) -> list[int]:
    """Two replicas that ended with the same answer for the same reason, or []."""
    for i in range(len(replicas)):
        for j in range(i + 1, len(replicas)):
            ending = replicas[i].ending
            if ending is not None and ending == replicas[j].ending:
                return [i, j]
    return []


def _answer_with(app: AnswerResult, winner: _Replica, sent: str) -> AnswerChunk:
    """Make `winner` the app's answer (its worker and receipt); the last chunk, carrying
    what was not sent yet."""
    assert winner.final is not None
    app.worker = winner.result.worker
    app.receipt = winner.result.receipt
    app.receipt_bytes = winner.result.receipt_bytes
    calls = [
        ToolCallDelta(
            index=index,
            id=call["id"],
            name=call["function"]["name"],
            arguments=call["function"]["arguments"],
        )
        for index, call in enumerate(winner.calls.calls())
    ]
    return msgspec.structs.replace(
        winner.final, text=winner.text[len(sent) :], tool_calls=calls, logprobs=winner.logprobs
    )


class Replicator:
    """Runs requests of the `replicated` tier."""

    def __init__(
        self, pool: ProxyPool, auditor: Auditor | None, rng: random.Random | None = None
    ) -> None:
        self.pool = pool
        self.auditor = auditor
        self._rng = rng or random.Random()
        self.agreed = 0
        self.mutually_audited = 0
        self._settling: set[asyncio.Task[None]] = set()
        self.outvoted = 0
        self.disagreed = 0

    async def call(
        self, request_id: str, generation: GenerationRequest, tier: Tier
    ) -> tuple[AnswerResult, AsyncGenerator[AnswerChunk, None]]:
        """Seal the request to three workers; the app's result and its agreed chunks."""
        workers = await self.pool.workers()
        config = self.pool.config
        # Every replica must be able to honour the request's tools, format, logprobs.
        features = needed_features(generation.extra, generation.kind)
        chosen = choose(
            workers,
            generation.model,
            config.max_coefficient_milli,
            REPLICAS,
            Selection(tier, features=features),
            self.pool.reputation,
        )
        if len(chosen) < REPLICAS:
            raise ClientError(
                "tier_unavailable",
                f"the replicated tier needs {REPLICAS} workers of `{generation.model}`;"
                f" {len(chosen)} can serve it now",
                True,
            )
        if generation.seed is None and generation.temperature != 0:
            generation = msgspec.structs.replace(generation, seed=self._rng.getrandbits(31))
        replicas: list[_Replica] = []
        streams = []
        for n, worker in enumerate(chosen, start=1):
            replica_id = f"{request_id}.r{n}"
            selection = Selection(tier, only=frozenset({worker.public_key}), features=features)
            call = await self.pool.seal(replica_id, generation, selection)
            result = self.pool.track(replica_id)
            replicas.append(_Replica(worker.public_key, result))
            streams.append(self.pool.answer(call, result))
        app = AnswerResult(request_id)
        self.pool.results[request_id] = app
        return app, self._agree(request_id, generation, replicas, streams, app)

    async def _agree(
        self,
        request_id: str,
        generation: GenerationRequest,
        replicas: list[_Replica],
        streams: list[AsyncGenerator[AnswerChunk, None]],
        app: AnswerResult,
    ) -> AsyncGenerator[AnswerChunk, None]:
        changed = asyncio.Event()

        async def run(replica: _Replica, stream: AsyncGenerator[AnswerChunk, None]) -> None:
            try:
                async for chunk in stream:
                    replica.feed(chunk)
                    changed.set()
            except ClientError as exc:
                replica.error = exc
            finally:
                replica.done = True
                changed.set()
                await stream.aclose()

        tasks = [asyncio.create_task(run(r, s)) for r, s in zip(replicas, streams, strict=True)]
        sent = ""
        settled: list[int] = []
        try:
            while True:
                await changed.wait()
                changed.clear()
                pair = ended_alike(replicas)
                if pair:
                    # Two replicas ended alike: that is the answer.
                    settled = pair
                    self.agreed += 1
                    yield _answer_with(app, replicas[pair[0]], sent)
                    return
                text, pair = agreed(replicas, sent)
                if len(text) > len(sent):
                    app.worker = app.worker or replicas[pair[0]].result.worker
                    yield AnswerChunk(text=text[len(sent) :])
                    sent = text
                if all(r.done for r in replicas):
                    # No two alike (sampling that differs between machines despite the
                    # seed): the first answer another replica's worker finds plausible.
                    chosen = await self._mutually_audited(generation, replicas, sent)
                    if chosen is not None:
                        self.mutually_audited += 1
                        yield _answer_with(app, replicas[chosen], sent)
                        return
                    self.disagreed += 1
                    errors = [str(r.error) for r in replicas if r.error is not None]
                    raise ClientError(
                        "replicas_disagree",
                        "no two of the three workers gave the same answer"
                        + (f" ({'; '.join(errors)})" if errors else ""),
                    )
        finally:
            if settled:
                # The third replica finishes in the background (it is paid for what it
                # did); then it is checked against the answer.
                task = asyncio.create_task(self._settle(generation, replicas, settled, tasks))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
            else:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _mutually_audited(
        self, generation: GenerationRequest, replicas: list[_Replica], sent: str
    ) -> int | None:
        """The index of the first finished answer (extending what was sent) that the
        worker of another replica scores as plausible, or None."""
        finished = [
            i
            for i, r in enumerate(replicas)
            if r.error is None and r.final is not None and r.text.startswith(sent)
        ]
        for i in finished:
            judges = frozenset(
                replicas[j].worker for j in finished if j != i and replicas[j].worker
            )
            if not judges:
                continue
            scoring = msgspec.structs.replace(
                generation, kind="score", answer=replicas[i].text, stream=False
            )
            try:
                _, last = await ask(self.pool, scoring, judges)
                if judge(unpack_scores(last.scores), Sampling.of(generation)).passed:
                    return i
            except (ClientError, ScoresError) as exc:
                log.info("a replica could not be judged: %s", exc)
        return None

    async def _settle(
        self,
        generation: GenerationRequest,
        replicas: list[_Replica],
        pair: list[int],
        tasks: list[asyncio.Task[None]],
    ) -> None:
        """Wait for the third replica (bounded by the request's timeout); if it is the
        odd one out, it loses reputation, and its answer is audited for a report."""
        odd_index = next(i for i in range(len(replicas)) if i not in pair)
        odd = replicas[odd_index]
        timeout = self.pool.config.request_timeout_s
        done, _ = await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            if task not in done:
                task.cancel()
        agreed_answer = replicas[pair[0]].ending
        evidence = (
            self.auditor.evidence(odd.result)
            if self.auditor is not None and odd.result.receipt_bytes is not None
            else None
        )
        for replica in replicas:
            replica.result.forget_evidence()
        if odd.error is None and odd.done and odd.ending == agreed_answer:
            return
        self.outvoted += 1
        now = time.monotonic()
        reputation = self.pool.reputation
        log.warning(
            "replica %s disagreed with the other two%s",
            odd.result.request_id,
            f" ({odd.error})" if odd.error is not None else "",
        )
        if odd.error is not None or not odd.done:
            reputation.error(odd.worker, now, "replica_failed")
        elif self.auditor is not None and odd.result.receipt is not None:
            # The audit judges the odd answer (it may be a plausible sample after all)
            # and yields the signed report if it fails.
            await self.auditor.audit(generation, odd.text, odd.result, evidence)
        else:
            reputation.audit_failed(odd.worker, now, reason="outvoted")

    async def wait_idle(self) -> None:
        """Until the replicas finishing in the background are checked (tests, shutdown)."""
        while self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)

    def status(self) -> dict[str, int]:
        return {
            "agreed": self.agreed,
            "mutually_audited": self.mutually_audited,
            "outvoted": self.outvoted,
            "disagreed": self.disagreed,
        }
