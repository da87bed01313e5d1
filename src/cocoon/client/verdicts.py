"""From a failed audit to a slash: the root's verifiers judge the evidence (DESIGN §11).

An audit failed: the client has a signed report, which moves reputations, and
evidence that proves what the worker was asked and what it answered
(audit/evidence.py). To take the worker's stake, more is needed than the
client's word: it seals the evidence to verifier workers the root lists
(attested, other than the audited one), each checks the evidence, scores the
answer with its own model and, if it agrees the answer is false, signs a
verdict. With a quorum of signatures the client submits them to the root,
which proposes the slash to the worker's stake contract; after the dispute
window (during which the root's owner may cancel it) anyone executes it, and
the client does, taking the reporter's share.

Without a root to follow, a wallet to pay the chain's fees, or enough
verifiers, the report is where it ends, and the status says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from ..audit.evidence import Evidence, VerdictTerms, VerifyRequest, pack
from ..chain.root import read_root_slashing
from ..chain.slashing import execute_slash, submit_verdicts
from ..chain.wallet_base import Wallet
from ..inference import GenerationRequest
from ..registry.follower import RootFollower
from .auditing import ask
from .directory import VerifiedWorker
from .errors import ClientError
from .proxies import ProxyPool

log = logging.getLogger(__name__)

# What a verdict slashes of the worker's stake, basis points.
SLASH_BP = 1_000
# Verifiers asked at once: the quorum, and one more in case one is slow or away.
SPARE_VERIFIERS = 1
# After the dispute window, wait this much more before executing (block times).
EXECUTE_MARGIN_S = 3.0


@dataclass
class VerdictStats:
    escalated: int = 0
    submitted: int = 0
    executed: int = 0
    short_of_quorum: int = 0
    not_possible: dict[str, int] = field(default_factory=dict)


class Verdicts:
    """Takes failed audits to the root's verifiers and, on a quorum, to the chain."""

    def __init__(
        self,
        pool: ProxyPool,
        follower: RootFollower | None,
        wallet: Wallet | None,
        slash_bp: int = SLASH_BP,
    ) -> None:
        self.pool = pool
        self.follower = follower
        self.wallet = wallet
        self.slash_bp = slash_bp
        self.stats = VerdictStats()
        self.recent: list[dict[str, object]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Stakes with a slash of ours in flight: one at a time (the stake holds one).
        self._pending: set[bytes] = set()

    def _cannot(self, why: str) -> None:
        self.stats.not_possible[why] = self.stats.not_possible.get(why, 0) + 1
        log.info("a failed audit stays a report: %s", why)

    async def escalate(
        self, generation: GenerationRequest, audited: VerifiedWorker, evidence: Evidence
    ) -> None:
        follower, wallet = self.follower, self.wallet
        if follower is None or wallet is None:
            self._cannot("no root or no wallet to slash through")
            return
        if not audited.wallet:
            self._cannot("the worker named no wallet, so no stake to slash")
            return
        if audited.public_key in self._pending:
            self._cannot("a slash of this worker is already on its way")
            return
        self._pending.add(audited.public_key)
        # In the background: a slash waits out the root's dispute window.
        task = asyncio.create_task(self._escalate(follower, wallet, generation, audited, evidence))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._pending.discard(audited.public_key))

    async def wait_idle(self) -> None:
        """Until every escalation in flight has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _escalate(
        self,
        follower: RootFollower,
        wallet: Wallet,
        generation: GenerationRequest,
        audited: VerifiedWorker,
        evidence: Evidence,
    ) -> None:
        self.stats.escalated += 1
        try:
            slashing = await read_root_slashing(follower.client, follower.root_address)
        except Exception as exc:  # the chain's errors, in one line
            self._cannot(f"the root's verifiers could not be read: {exc}")
            return
        workers = await self.pool.workers()
        verifiers = [
            w
            for w in workers
            if w.public_key in slashing.verifiers
            and w.public_key != audited.public_key
            and generation.model in w.scoring
        ]
        if len(verifiers) < slashing.quorum:
            self._cannot(f"{len(verifiers)} verifiers reachable, the root needs {slashing.quorum}")
            return
        stake = follower.stake_address(audited.wallet, audited.public_key)
        terms = VerdictTerms(
            network_id=follower.rules.state.network_id,
            stake=stake,
            slash_bp=self.slash_bp,
            nonce=time.time_ns() // 1000,  # rising, as the stake requires per verdict
        )
        request = GenerationRequest(
            kind="verify",
            model=generation.model,
            evidence=pack(VerifyRequest(evidence=pack(evidence), terms=terms)),
            stream=False,
        )
        asked = verifiers[: slashing.quorum + SPARE_VERIFIERS]
        answers = await asyncio.gather(*(self._ask(request, v) for v in asked))
        signed = [a for a in answers if a]
        record: dict[str, object] = {
            "worker": audited.key_id,
            "stake": stake,
            "verifiers_asked": len(asked),
            "verdicts": len(signed),
            "quorum": slashing.quorum,
        }
        self.recent = [*self.recent[-15:], record]
        if len(signed) < slashing.quorum:
            self.stats.short_of_quorum += 1
            log.warning(
                "verifiers did not agree that %s's answer was false: %d of %d signed",
                audited.key_id,
                len(signed),
                len(asked),
            )
            return
        try:
            await submit_verdicts(wallet, follower.root_address, signed[: slashing.quorum])
        except Exception as exc:
            record["error"] = str(exc)
            log.warning("submitting the verdicts on %s failed: %s", audited.key_id, exc)
            return
        self.stats.submitted += 1
        record["submitted"] = True
        log.warning(
            "verdicts on %s submitted to the root: %d bp of its stake %s, executable in %d s",
            audited.key_id,
            self.slash_bp,
            stake,
            slashing.dispute_delay,
        )
        # Held until executed: the stake takes one pending slash at a time.
        await self._execute(stake, slashing.dispute_delay, record)

    async def _ask(self, request: GenerationRequest, verifier: VerifiedWorker) -> bytes:
        try:
            _, last = await ask(self.pool, request, frozenset({verifier.public_key}))
            return last.verdict
        except ClientError as exc:
            log.warning("verifier %s did not judge: %s", verifier.key_id, exc)
            return b""

    async def _execute(self, stake: str, delay_s: int, record: dict[str, object]) -> None:
        """Once the dispute window has passed, execute the slash (the submitter's share
        comes to this wallet); a slash cancelled in the window leaves nothing to do."""
        assert self.wallet is not None
        await asyncio.sleep(delay_s + EXECUTE_MARGIN_S)
        try:
            await execute_slash(self.wallet, stake)
        except Exception as exc:
            record["execute_error"] = str(exc)
            log.warning("executing the slash on %s failed: %s", stake, exc)
            return
        self.stats.executed += 1
        record["executed"] = True
        log.warning("slash on %s executed", stake)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def status(self) -> dict[str, object]:
        stats = self.stats
        return {
            "escalated": stats.escalated,
            "submitted": stats.submitted,
            "executed": stats.executed,
            "short_of_quorum": stats.short_of_quorum,
            "not_possible": dict(stats.not_possible),
            "recent": list(self.recent),
        }
