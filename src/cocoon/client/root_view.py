"""The root's word on the workers a client verified (DESIGN §11).

A worker that passed the client's own attestation policy is used only while
the root lists its image (attested workers) and at least one of its models,
and its stake reaches the root's minimum; models the root does not list are
left out of its offer. Refusals are kept per worker after a proxy drops the
worker too, so that a request for its model fails with the root's reason
rather than "no such model", and are judged again at every root change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from ..registry.follower import RegistryError, RootFollower
from ..registry.rules import MODEL_NOT_ON_ROOT, ROOT_REASONS, STAKE_UNKNOWN, Refusal
from ..tee.model_id import model_name
from .directory import VerifiedWorker

log = logging.getLogger(__name__)


class RootView:
    """Judges verified workers by the followed root; shared by a client's proxy sessions."""

    def __init__(self, follower: RootFollower, refused: dict[str, str]) -> None:
        self.follower = follower
        # The client's record of refused workers (key id -> reason), shown in statuses.
        self.refused = refused
        self.refusals: dict[str, tuple[VerifiedWorker, Refusal]] = {}

    async def judge(self, worker: VerifiedWorker) -> VerifiedWorker | None:
        """The worker as the root lets us use it (its models narrowed), or None."""
        follower = self.follower
        rules = follower.rules
        refusal = rules.image_refusal("worker", worker.verdict) or rules.model_refusal(
            worker.models
        )
        if refusal is None and follower.check_stakes:
            try:
                stake = await follower.stake(worker.wallet, worker.public_key)
            except RegistryError as exc:
                refusal = Refusal(STAKE_UNKNOWN, str(exc))
            else:
                refusal = rules.stake_refusal("worker", stake)
        if refusal is not None:
            if self.refused.get(worker.key_id) != str(refusal):
                log.warning("worker %s refused: %s", worker.key_id, refusal)
            self.refused[worker.key_id] = str(refusal)
            self.refusals[worker.key_id] = (worker, refusal)
            return None
        self.refusals.pop(worker.key_id, None)
        if self.refused.get(worker.key_id, "").split(":")[0] in ROOT_REASONS:
            del self.refused[worker.key_id]  # the root lets it in again
        allowed, refused = rules.split_models(worker.models)
        if refused:
            self.refused[worker.key_id] = (
                f"{MODEL_NOT_ON_ROOT}: {', '.join(refused)} not on the root"
            )
            return dataclasses.replace(worker, models=allowed)
        return worker

    def refusal_for(self, model: str) -> Refusal | None:
        """Why the root keeps us from every worker offering `model` (None: none does)."""
        for worker, refusal in self.refusals.values():
            if model in worker.models or model in {model_name(m) for m in worker.models}:
                return refusal
        return None

    async def rejudge(self, known: Iterable[VerifiedWorker]) -> None:
        """The root changed: judge again every worker we verified, those a proxy already
        dropped included."""
        judged = {w.key_id: w for w, _ in self.refusals.values()}
        judged.update((w.key_id, w) for w in known)
        for worker in judged.values():
            await self.judge(worker)
