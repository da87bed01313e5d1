"""Prices in integer nanotons (DESIGN §6).

price = Σ tokens(class) * multiplier(class) * base price per token * worker coefficient
        * trust tier multiplier / workers running the request

Multipliers and coefficients are integers in thousandths, so the whole
computation is exact integer arithmetic; the only rounding is one floor at
the end, in the payer's favour.
"""

from __future__ import annotations

import msgspec

MILLI = 1000


class Prices(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The network's price list (from config now, from the root contract later)."""

    base_nano_per_token: int = 1_000
    prompt_milli: int = 1_000
    cached_prompt_milli: int = 100
    completion_milli: int = 4_000
    reasoning_milli: int = 4_000

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"price field {name} must not be negative")


class TierPrices(Prices, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A price list for one request of a trust tier (DESIGN §11; `registry.tiers`):
    the tier's multiplier (basis points) and how many workers share it."""

    tier_bp: int = 10_000
    replicas: int = 1


def price_nano(
    prices: Prices,
    *,
    prompt_tokens: int,
    cached_prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
    coefficient_milli: int,
) -> int:
    """The price of one request in nanotons."""
    # Cached prompt tokens are part of prompt_tokens (OpenAI's convention); bill
    # them at the cached rate instead of the full one.
    cached = min(cached_prompt_tokens, prompt_tokens)
    weighted_milli = (
        (prompt_tokens - cached) * prices.prompt_milli
        + cached * prices.cached_prompt_milli
        + completion_tokens * prices.completion_milli
        + reasoning_tokens * prices.reasoning_milli
    )
    if not isinstance(prices, TierPrices):
        return weighted_milli * prices.base_nano_per_token * coefficient_milli // (MILLI * MILLI)
    return (
        weighted_milli
        * prices.base_nano_per_token
        * coefficient_milli
        * prices.tier_bp
        // (MILLI * MILLI * 10_000 * max(1, prices.replicas))
    )
