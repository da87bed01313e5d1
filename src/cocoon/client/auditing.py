"""The client's audits of answers by prefill on another worker (DESIGN §11).

The client is the only party that sees plaintext, so it checks the work: a
sampled fraction of answers (more for the `audited` tier and for newcomers)
goes, sealed, with its prompt to a different worker serving the same model,
which scores every answer token in one prefill pass. The verdict
(`audit.verdict`) reads the scores against the request's sampling. A pass
adds to the worker's reputation; a failure takes from it, and yields a signed
report sent to the proxies. The audited worker cannot tell which answers are
audited: the audit is a separate request, to another worker, after the answer.

Audits run in the background, bounded in number; the app's answer never waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from ..audit.evidence import Evidence
from ..audit.reports import Report, new_nonce, report_json, sign_report
from ..audit.reputation import Reputation
from ..audit.scores import ScoresError, unpack_scores
from ..audit.verdict import Sampling, Verdict, judge
from ..config import AuditConfig
from ..inference import AnswerChunk, GenerationRequest
from ..registry.tiers import Tier
from .calls import AnswerResult
from .choosing import Selection
from .directory import VerifiedWorker
from .errors import ClientError
from .proxies import ProxyPool

log = logging.getLogger(__name__)

Escalate = Callable[[GenerationRequest, VerifiedWorker, Evidence], Awaitable[None]]

# Reports kept for the status pages.
RECENT_REPORTS = 64
AUDITABLE = ("chat", "completion")
# Errors that are the answering worker's doing.
WORKER_FAULTS = frozenset(
    {"bad_answer", "bad_receipt", "worker_failed", "upstream_error", "upstream_unavailable"}
)


@dataclass
class AuditStats:
    drawn: int = 0
    passed: int = 0
    failed: int = 0
    no_auditor: int = 0
    busy: int = 0
    errors: int = 0
    reports_sent: int = 0


@dataclass(frozen=True)
class AuditOutcome:
    """One audit done: who was audited, by whom, the verdict, and the report if any."""

    worker: bytes
    auditor: bytes
    verdict: Verdict
    report: bytes | None = None


async def ask(
    pool: ProxyPool, request: GenerationRequest, workers: frozenset[bytes]
) -> tuple[AnswerResult, AnswerChunk]:
    """Send one request of the client's own (an audit, a verdict) to one of `workers`;
    what was learned of its answer, and its last chunk (which carries scores, a
    verdict). Paid like any request; ClientError as any request."""
    request_id = pool.new_request_id()
    call = await pool.seal(request_id, request, Selection(only=workers))
    track = pool.track(request_id)
    last = AnswerChunk()
    chunks = pool.answer(call, track)
    try:
        async for chunk in chunks:
            last = chunk
    finally:
        await chunks.aclose()
    track.forget_evidence()
    return track, last


class Auditor:
    """Draws answers for audit, runs the audits, keeps score."""

    def __init__(
        self,
        pool: ProxyPool,
        config: AuditConfig,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.reputation: Reputation = pool.reputation
        self.stats = AuditStats()
        self.reports: deque[dict[str, object]] = deque(maxlen=RECENT_REPORTS)
        self._rng = rng or random.Random()
        self._tasks: set[asyncio.Task[AuditOutcome | None]] = set()
        # What to do with the evidence of a failed audit beyond the report: have the
        # root's verifiers judge it, for a slash (client/verdicts.py).
        self.escalate: Escalate | None = None

    def failed(self, result: AnswerResult, error: ClientError) -> None:
        """An answer broke off: the worker that was giving it loses a little standing
        when the fault was its own (not the app's, the proxy's or the network's)."""
        if result.worker is None:
            return
        now = time.monotonic()
        if error.code == "timeout":
            self.reputation.timeout(result.worker.public_key, now)
        elif error.code in WORKER_FAULTS:
            self.reputation.error(result.worker.public_key, now, error.code)

    def rate(self, tier: Tier, worker: bytes) -> float:
        """The chance that an answer of ``worker`` at ``tier`` is audited."""
        base = self.config.audited_rate if tier.name == "audited" else self.config.rate
        return min(1.0, base * self.reputation.audit_boost(worker))

    def answered(
        self, generation: GenerationRequest, answer: str, result: AnswerResult, tier: Tier
    ) -> asyncio.Task[AuditOutcome | None] | None:
        """An answer reached the app: note it, and audit it if drawn (in the background)."""
        worker = result.worker
        if worker is None or result.receipt is None or not result.receipt.final:
            return None
        self.reputation.answered(worker.public_key, time.monotonic())
        if generation.kind not in AUDITABLE or not answer or tier.replicas > 1:
            # A replicated answer is checked by its replicas (replicas.py audits the
            # odd one out), with the seed they shared, which the app's request lacks.
            return None
        if self._rng.random() >= self.rate(tier, worker.public_key):
            return None
        self.stats.drawn += 1
        if len(self._tasks) >= self.config.max_concurrent:
            self.stats.busy += 1
            return None
        # The evidence is taken now: the gateway lets go of it once the answer is out.
        task = asyncio.create_task(self.audit(generation, answer, result, self.evidence(result)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def evidence(self, result: AnswerResult) -> Evidence:
        """What proves the answer of `result` (audit/evidence.py), while it is held."""
        assert result.receipt_bytes is not None
        return Evidence(
            network=self.pool.config.network,
            envelope=result.envelope,
            content_key=result.content_key,
            sealed=list(result.sealed),
            receipt=result.receipt_bytes,
        )

    async def audit(
        self,
        generation: GenerationRequest,
        answer: str,
        result: AnswerResult,
        evidence: Evidence | None = None,
    ) -> AuditOutcome | None:
        """Audit one answer now; None when no worker can audit it or the audit failed
        to run (neither counts for or against the worker)."""
        audited = result.worker
        assert audited is not None and result.receipt_bytes is not None
        if evidence is None:
            evidence = self.evidence(result)
        try:
            workers = await self.pool.workers()
            now = time.monotonic()
            auditors = frozenset(
                w.public_key
                for w in workers
                if generation.model in w.scoring
                and w.public_key != audited.public_key
                and self.reputation.allowed(w.public_key, now)
            )
            if not auditors:
                self.stats.no_auditor += 1
                log.info("no worker can audit %s's answer for %s", audited.key_id, generation.model)
                return None
            scoring = msgspec.structs.replace(generation, kind="score", answer=answer, stream=False)
            track, last = await ask(self.pool, scoring, auditors)
            if track.worker is None or track.receipt_bytes is None:
                raise ClientError("bad_answer", "the audit came back without a receipt")
            packed = last.scores
            scores = unpack_scores(packed)
        except (ClientError, ScoresError) as exc:
            self.stats.errors += 1
            log.warning("audit of %s's answer did not run: %s", audited.key_id, exc)
            return None
        verdict = judge(scores, Sampling.of(generation))
        now = time.monotonic()
        if verdict.passed:
            self.stats.passed += 1
            self.reputation.audit_passed(audited.public_key, now)
            log.info(
                "audit of %s by %s passed (%s, top1 %.2f, %d tokens)",
                audited.key_id,
                track.worker.key_id,
                verdict.reason,
                verdict.top1,
                verdict.tokens,
            )
            return AuditOutcome(audited.public_key, track.worker.public_key, verdict)
        self.stats.failed += 1
        self.reputation.audit_failed(audited.public_key, now, reason=verdict.reason)
        report = self._report(generation, result, track, packed, verdict)
        log.warning(
            "audit of %s by %s FAILED: %s (top1 %.2f, in support %.2f, %d tokens)",
            audited.key_id,
            track.worker.key_id,
            verdict.reason,
            verdict.top1,
            verdict.in_support,
            verdict.tokens,
        )
        if self.config.report:
            self.stats.reports_sent += await self.pool.send_report(report)
        if self.escalate is not None:
            await self.escalate(generation, audited, evidence)
        return AuditOutcome(audited.public_key, track.worker.public_key, verdict, report)

    def _report(
        self,
        generation: GenerationRequest,
        result: AnswerResult,
        track: AnswerResult,
        scores: bytes,
        verdict: Verdict,
    ) -> bytes:
        assert result.worker is not None and result.receipt_bytes is not None
        assert track.receipt_bytes is not None
        sampling = Sampling.of(generation)
        identity = self.pool.credentials.identity
        report = Report(
            network=self.pool.config.network,
            nonce=new_nonce(),
            created=int(time.time()),
            worker_key=result.worker.public_key,
            audited_receipt=result.receipt_bytes,
            auditor_receipt=track.receipt_bytes,
            scores=scores,
            reason=verdict.reason,
            top1=verdict.top1,
            in_support=verdict.in_support,
            mean_logprob=verdict.mean_logprob,
            sampling={
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": sampling.top_k,
                "min_p": sampling.min_p,
            },
            reporter_key=identity.public_key,
            paid_nano=self.pool.paid_to(result.worker.public_key),
        )
        self.reports.append(report_json(report))
        return sign_report(identity.signing_key, report)

    async def wait_idle(self) -> None:
        """Until the audits running now are done (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def status(self) -> dict[str, object]:
        stats = self.stats
        return {
            "rate": self.config.rate,
            "audited_rate": self.config.audited_rate,
            "drawn": stats.drawn,
            "passed": stats.passed,
            "failed": stats.failed,
            "no_auditor": stats.no_auditor,
            "busy": stats.busy,
            "errors": stats.errors,
            "reports_sent": stats.reports_sent,
            "running": len(self._tasks),
            "recent_reports": list(self.reports),
        }
