"""Top-up amounts typed in the wallet page: TON as text, exactly to nanotons, or refused."""

from __future__ import annotations

import pytest

from cocoon.web.wallet import MAX_TOP_UP_NANO, WalletError, parse_ton


@pytest.mark.parametrize(
    ("text", "nano"),
    [("1", 1_000_000_000), ("0.5", 500_000_000), (" 2.000000001 ", 2_000_000_001), (3, 3 * 10**9)],
)
def test_exact(text: object, nano: int) -> None:
    assert parse_ton(text) == nano


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0.0000000001", "more than 9 decimals"),
        ("0", "above 0"),
        ("-1", "above 0"),
        ("NaN", "not a number"),
        ("Infinity", "not a number"),
        ("1e30", "at most"),
        ("ten", "not a number"),
        (None, "not a number"),
    ],
)
def test_refused(text: object, why: str) -> None:
    with pytest.raises(WalletError) as caught:
        parse_ton(text)
    assert caught.value.status == 400 and why in str(caught.value)
    assert MAX_TOP_UP_NANO == 10**15
