"""Trust tiers price a request at the root's multiplier, split among its workers."""

from __future__ import annotations

from cocoon.chain.root_cells import RootParams
from cocoon.pricing import Prices, price_nano
from cocoon.registry.tiers import tier_prices

ROOT = RootParams()
PRICES = Prices()


def price(tier: str, replicas: int = 1) -> int:
    return price_nano(
        tier_prices(PRICES, tier, replicas, ROOT.tier_bp),
        prompt_tokens=100,
        cached_prompt_tokens=0,
        completion_tokens=50,
        reasoning_tokens=0,
        coefficient_milli=1500,
    )


def test_each_tier_carries_its_multiplier() -> None:
    tee = price("")
    assert tee == 450_000  # (100 + 50 * 4) tokens * 1000 nano * 1.5
    assert price("tee+gpu") == tee * 12 // 10
    assert price("audited") == tee * 15 // 10
    assert price("tee,region=DE") == tee * 11 // 10
    assert price("tee+gpu,region=DE") == tee * 12 * 11 // 100
    # Three workers share the replicated tier's 3x: each is paid one tee price.
    assert price("replicated", 3) == tee
    assert tier_prices(PRICES, "", 1, ROOT.tier_bp) is PRICES


def test_the_floor_is_one_in_the_payers_favour() -> None:
    odd = RootParams(tier_gpu_bp=12_345)
    scaled = tier_prices(Prices(base_nano_per_token=7), "tee+gpu", 1, odd.tier_bp)
    exact = 7 * 1 * 1000 * 1000 * 12_345 / (1000 * 1000 * 10_000)
    charged = price_nano(
        scaled,
        prompt_tokens=1,
        cached_prompt_tokens=0,
        completion_tokens=0,
        reasoning_tokens=0,
        coefficient_milli=1000,
    )
    assert charged == int(exact) and charged <= exact
