"""An answer token's score from the model's logits at its position (DESIGN §11).

An engine that runs the model itself (llama.cpp) prefills prompt + answer once
and reads, at each answer position, the logits over the whole vocabulary; this
turns one such row into a `TokenScore` (rank, log-probability at temperature 1,
the top token's, and the mass ranked above it at the audited temperature).
numpy over a 49k-token vocabulary costs about 0.3 ms a row here, a small part
of the prefill itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cocoon.audit.scores import TokenScore
from cocoon.inference import TokenLogprob, TopLogprob


def scoring_temperature(temperature: float | None) -> float:
    """The temperature `mass_above` is taken at: the request's, 1 for greedy (0) or unset."""
    if temperature is None or temperature <= 0.0:
        return 1.0
    return temperature


def score_token(logits: Any, token: int, temperature: float) -> TokenScore:
    """The score of `token` under one row of logits (a float32 vector, one per vocab entry)."""
    row = np.asarray(logits, dtype=np.float64)
    top = float(row.max())
    normaliser = top + math.log(float(np.exp(row - top).sum()))
    chosen = float(row[token])
    above = row > chosen
    rank = int(np.count_nonzero(above))
    if rank == 0:
        mass_above = 0.0
    else:
        scaled = row / temperature
        scaled_top = top / temperature
        weights = np.exp(scaled - scaled_top)
        mass_above = float(weights[above].sum() / weights.sum())
    return TokenScore(
        rank=rank,
        logprob=chosen - normaliser,
        top_logprob=top - normaliser,
        mass_above=min(1.0, mass_above),
    )


def token_logprob(logits: Any, token: int, top: int, piece: Callable[[int], bytes]) -> TokenLogprob:
    """A sampled token's log probability under one row of logits (the model's own
    distribution: before temperature, penalties or a grammar), and the ``top`` most
    likely tokens there, most likely first; ``piece`` gives a token's bytes."""
    row = np.asarray(logits, dtype=np.float64)
    peak = float(row.max())
    normaliser = peak + math.log(float(np.exp(row - peak).sum()))
    best: list[TopLogprob] = []
    if top > 0:
        ids = np.argpartition(-row, top - 1)[:top]
        for index in ids[np.argsort(-row[ids], kind="stable")]:
            raw = piece(int(index))
            best.append(
                TopLogprob(raw.decode("utf-8", "replace"), float(row[index]) - normaliser, raw)
            )
    raw = piece(token)
    return TokenLogprob(raw.decode("utf-8", "replace"), float(row[token]) - normaliser, raw, best)
