"""Which verified workers a request goes to, or the refusal that says why none.

An app may ask for a bare name; the request is routed and sealed on the full id
that verified workers serve (`directory.resolve_model`), to k of them chosen by
`choosing`. When none serves it, the error names the root's refusal where the
root is why, and is "model_not_found" only where the model is truly not served.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import msgspec

from ..audit.reputation import Reputation
from ..config import ClientConfig
from ..inference import GenerationRequest
from ..registry.follower import RootFollower
from .choosing import Selection, choose
from .directory import VerifiedWorker, resolve_model
from .errors import ClientError
from .root_view import RootView


class RoutingSession(Protocol):
    """What routing reads of a proxy session."""

    config: ClientConfig
    # The root contract, when followed, and its word on the workers verified.
    follower: RootFollower | None
    root_view: RootView | None
    reputation: Reputation | None

    async def workers(self, refresh: bool = False) -> list[VerifiedWorker]:
        """The verified workers of the proxy's directory, fetched again if `refresh`."""
        ...


async def route(
    session: RoutingSession, generation: GenerationRequest, selection: Selection
) -> tuple[GenerationRequest, list[VerifiedWorker]]:
    """The request as it is sealed (on the full model id) and the workers chosen for it;
    raise ClientError if none may take it."""
    workers, model = await route_model(session, generation.model)
    if model != generation.model:
        # A bare name asked for: route and seal on the full id accepted.
        generation = msgspec.structs.replace(generation, model=model)
    config = session.config
    chosen = choose(
        workers,
        generation.model,
        config.max_coefficient_milli,
        config.candidates,
        selection,
        session.reputation,
    )
    return generation, chosen


async def route_model(session: RoutingSession, model: str) -> tuple[list[VerifiedWorker], str]:
    """The verified workers and the id of ``model`` they serve; raise ClientError if none.

    A model not found in the cached directory is looked for once more in a fresh one
    (a worker may have joined since)."""
    workers = await session.workers()
    resolved = resolve_model(workers, model)
    if resolved is None:
        workers = await session.workers(refresh=True)
        resolved = resolve_model(workers, model)
    if resolved is not None:
        return workers, resolved
    if session.follower is not None:
        # Workers gone from the directory may be the root's doing, seen by the proxy
        # before us: catch up with the root now (one version read), so that the
        # error names its reason rather than "no such model".
        with contextlib.suppress(Exception):
            await session.follower.poll()
    refusal = session.root_view.refusal_for(model) if session.root_view is not None else None
    if refusal is not None:
        raise ClientError(
            refusal.reason,
            f"no worker of `{model}` is allowed by the root: {refusal}",
            True,
        )
    raise ClientError("model_not_found", f"the model `{model}` does not exist")
