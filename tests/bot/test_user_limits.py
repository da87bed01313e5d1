"""Per-user limits: a token-bucket rate and a spending cap over a window, with the
time passed in."""

from __future__ import annotations

import pytest

from cocoon.client.user_limits import UserLimiter, UserLimitError, UserLimits


def test_rate_allows_a_burst_then_refills_evenly() -> None:
    limiter = UserLimiter(UserLimits(requests_per_minute=3, spend_cap_nano=0))
    for _ in range(3):
        limiter.admit(1, now=0.0)
    with pytest.raises(UserLimitError) as info:
        limiter.admit(1, now=0.0)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.retry_after_s == pytest.approx(20.0)
    # Another user is not affected.
    limiter.admit(2, now=0.0)
    # One request comes back every 20 s.
    with pytest.raises(UserLimitError):
        limiter.admit(1, now=19.0)
    limiter.admit(1, now=20.5)
    assert limiter.refused == {"rate_limit_exceeded": 2}


def test_spend_cap_counts_charges_inside_the_window() -> None:
    limiter = UserLimiter(
        UserLimits(requests_per_minute=0, spend_cap_nano=1000, spend_window_s=100.0)
    )
    limiter.admit(7, now=0.0)
    limiter.charge(7, 600, now=1.0)
    limiter.admit(7, now=2.0)  # 600 < 1000: allowed, may pass the cap by one answer
    limiter.charge(7, 600, now=3.0)
    assert limiter.spent_nano(7, now=3.0) == 1200
    with pytest.raises(UserLimitError) as info:
        limiter.admit(7, now=4.0)
    assert info.value.code == "spending_cap_reached"
    assert "1200 of 1000" in info.value.message
    assert info.value.retry_after_s == pytest.approx(97.0)
    # The first charge leaves the window at 101 s: 600 left, under the cap.
    limiter.admit(7, now=101.5)
    assert limiter.spent_nano(7, now=101.5) == 600


def test_users_beyond_max_are_forgotten_oldest_first() -> None:
    limiter = UserLimiter(UserLimits(requests_per_minute=1, max_users=2))
    limiter.admit(1, now=0.0)
    limiter.admit(2, now=0.0)
    limiter.admit(3, now=0.0)  # user 1 is forgotten: a fresh bucket
    limiter.admit(1, now=0.0)
    with pytest.raises(UserLimitError):
        limiter.admit(3, now=0.0)
