"""Which workers the root lets this proxy route to.

A worker is admitted at its announce when the root lists its attested image
(for attested workers), at least one of its models, and its stake reaches the
root's minimum; models the root does not list are dropped from its offer.
When the root changes, every connected worker is checked again with the
stakes already cached, and the ones no longer allowed are disconnected (a
proxy must not keep routing to what the network withdrew).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..registry.follower import RegistryError, RootFollower
from ..registry.rules import STAKE_UNKNOWN, Refusal
from ..wire.messages import WorkerAnnounce
from ..wire.transport import Channel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admitted:
    """A worker the root lets serve: the models it may serve here."""

    models: frozenset[str]
    refused_models: list[str]


class WorkerAdmission:
    """The root's verdict on each worker; without a followed root, everyone is admitted."""

    def __init__(self, follower: RootFollower | None) -> None:
        self.follower = follower
        # key id -> why the root refused that worker (the latest refusal).
        self.refused: dict[str, str] = {}

    async def admit(self, channel: Channel, announce: WorkerAnnounce) -> Admitted | Refusal:
        follower = self.follower
        if follower is None:
            return Admitted(frozenset(announce.models), [])
        try:
            await follower.stake(announce.wallet, channel.peer.public_key)  # into the cache
        except RegistryError as exc:
            refusal = Refusal(STAKE_UNKNOWN, str(exc))
            self.refused[channel.key_id] = str(refusal)
            return refusal
        return self._judge(channel, announce.models, announce.wallet)

    def recheck(self, channel: Channel, models: list[str], wallet: str) -> Admitted | Refusal:
        """Again under the current rules, with the stake as last read (no chain call)."""
        follower = self.follower
        if follower is None:
            return Admitted(frozenset(models), [])
        return self._judge(channel, models, wallet)

    def _judge(self, channel: Channel, models: list[str], wallet: str) -> Admitted | Refusal:
        assert self.follower is not None
        rules = self.follower.rules
        refusal = rules.image_refusal("worker", channel.verdict) or rules.model_refusal(models)
        if refusal is None and self.follower.check_stakes:
            stake = self.follower.cached_stake(wallet, channel.peer.public_key)
            refusal = rules.stake_refusal("worker", stake)
        if refusal is not None:
            self.refused[channel.key_id] = str(refusal)
            return refusal
        self.refused.pop(channel.key_id, None)
        allowed, refused = rules.split_models(models)
        if refused:
            log.info("worker %s: models not on the root: %s", channel.key_id, ", ".join(refused))
        return Admitted(allowed, refused)
