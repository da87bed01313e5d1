"""A worker's channel: a small first deposit, topped up by what the worker earned
(proxy/funding.py; issue 16, item 5)."""

from __future__ import annotations

from cocoon.payments.book import ChannelRow
from cocoon.proxy.funding import TON, FundingPolicy

POLICY = FundingPolicy.within(10 * TON)


def row(deposit: int, owed: int, vouchered: int = 0) -> ChannelRow:
    return ChannelRow(
        channel="0:ab",
        side="payer",
        peer="w",
        payer_key=b"k",
        deposit_nano=deposit,
        seqno=0,
        total_nano=vouchered,
        signature=None,
        redeemed_nano=0,
        owed_nano=owed,
    )


def test_a_new_worker_gets_one_ton_not_the_whole_deposit() -> None:
    assert POLICY.initial_nano == TON
    assert FundingPolicy.within(TON // 2).initial_nano == TON // 2


def test_no_top_up_while_a_quarter_is_left() -> None:
    assert POLICY.top_up_nano(row(TON, owed=TON // 2)) == 0
    assert POLICY.top_up_nano(row(TON, owed=3 * TON // 4)) == 0


def test_a_low_channel_grows_by_what_the_worker_earned() -> None:
    # Earned 0.9 of 1 TON: topped up by the initial deposit (more than it earned).
    assert POLICY.top_up_nano(row(TON, owed=9 * TON // 10)) == TON
    # Earned 3.5 of 4 TON: by 3.5 TON, so the deposit doubles with the earnings.
    assert POLICY.top_up_nano(row(4 * TON, owed=35 * TON // 10)) == 35 * TON // 10


def test_what_is_locked_beyond_the_earnings_stays_within_the_headroom() -> None:
    # Earned 95 of 100 TON: topping up by 95 would leave 100 unowed; 10 is the cap.
    amount = POLICY.top_up_nano(row(100 * TON, owed=95 * TON))
    assert amount == 5 * TON
    deposit = 100 * TON + amount
    assert deposit - 95 * TON == POLICY.max_headroom_nano


def test_growth_over_a_working_life_follows_the_earnings() -> None:
    deposit, earned = POLICY.initial_nano, 0
    for _ in range(40):
        earned = min(deposit, earned + TON // 10)  # it serves, 0.1 TON at a time
        deposit += POLICY.top_up_nano(row(deposit, owed=earned))
        assert deposit - earned <= POLICY.max_headroom_nano
    assert earned == 4 * TON
    assert deposit < earned + POLICY.max_headroom_nano
