"""Which API features each served model's workers offer, for /v1/models.

An app (or an agent framework probing a model) learns there whether tools,
response_format and logprobs can be used with a model before it sends a
request that would be refused for want of them.
"""

from __future__ import annotations

from ..tee.model_id import model_name
from .directory import VerifiedWorker, features_of


def served_features(workers: list[VerifiedWorker]) -> dict[str, list[str]]:
    """Per served model id and bare name: the features at least one of its workers offers."""
    offered: dict[str, set[str]] = {}
    for worker in workers:
        for model in worker.models:
            features = features_of(worker, model)
            offered.setdefault(model, set()).update(features)
            offered.setdefault(model_name(model), set()).update(features)
    return {model: sorted(features) for model, features in offered.items()}
