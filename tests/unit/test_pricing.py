from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoon.pricing import Prices, price_nano

PRICES = Prices(
    base_nano_per_token=1_000,
    prompt_milli=1_000,
    cached_prompt_milli=100,
    completion_milli=4_000,
    reasoning_milli=4_000,
)


def test_price_by_class_and_coefficient() -> None:
    # 10 prompt (2 of them cached), 5 completion, 1 reasoning at coefficient 1.5
    price = price_nano(
        PRICES,
        prompt_tokens=10,
        cached_prompt_tokens=2,
        completion_tokens=5,
        reasoning_tokens=1,
        coefficient_milli=1_500,
    )
    expected_milli = 8 * 1_000 + 2 * 100 + 5 * 4_000 + 1 * 4_000
    assert price == expected_milli * 1_000 * 1_500 // 1_000_000
    assert isinstance(price, int)


def test_cached_tokens_never_exceed_prompt_tokens() -> None:
    a = price_nano(
        PRICES,
        prompt_tokens=3,
        cached_prompt_tokens=10,
        completion_tokens=0,
        reasoning_tokens=0,
        coefficient_milli=1000,
    )
    assert a == 3 * 100 * 1000 // 1000


def test_negative_prices_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Prices(base_nano_per_token=-1)


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(1, 10**5),
)
def test_price_is_monotonic_in_every_class(
    prompt: int, cached: int, completion: int, reasoning: int, coefficient: int
) -> None:
    base = dict(
        prompt_tokens=prompt,
        cached_prompt_tokens=min(cached, prompt),
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        coefficient_milli=coefficient,
    )
    price = price_nano(PRICES, **base)
    assert price >= 0
    for key in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
        more = dict(base)
        more[key] += 1
        assert price_nano(PRICES, **more) >= price
