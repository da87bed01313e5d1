"""Reputation: audits, reports, errors and time move a worker's score."""

from __future__ import annotations

import pytest

from cocoon.audit.reputation import NEW_AUDITS, Reputation

W = b"w" * 32
OTHER = b"o" * 32


def test_a_newcomer_is_neutral_and_audited_more_until_it_has_a_record() -> None:
    reputation = Reputation()
    assert reputation.score(W, 0.0) == 0.5
    assert reputation.allowed(W, 0.0)
    assert reputation.audit_boost(W) > 1
    for _ in range(NEW_AUDITS):
        reputation.audit_passed(W, 0.0)
    assert reputation.audit_boost(W) == 1
    assert reputation.score(W, 0.0) > 0.5


def test_one_failed_audit_excludes_a_newcomer_but_not_a_proven_worker() -> None:
    reputation = Reputation()
    reputation.audit_failed(W, 0.0)
    assert not reputation.allowed(W, 0.0)
    for _ in range(20):
        reputation.audit_passed(OTHER, 0.0)
    reputation.audit_failed(OTHER, 0.0)
    assert reputation.allowed(OTHER, 0.0)


def test_a_worker_that_lies_in_one_answer_of_five_ends_excluded() -> None:
    reputation = Reputation()
    for n in range(200):
        if n % 5 == 4:
            reputation.audit_failed(W, float(n))
        else:
            reputation.audit_passed(W, float(n))
    assert not reputation.allowed(W, 200.0)


def test_an_excluded_worker_recovers_with_time() -> None:
    reputation = Reputation(half_life_s=60.0)
    reputation.audit_failed(W, 0.0)
    assert not reputation.allowed(W, 30.0)
    assert reputation.allowed(W, 240.0)  # about 3 half-lives after one failure
    assert reputation.score(W, 6000.0) == pytest.approx(0.5, abs=1e-3)


def test_reports_weigh_what_the_reporter_paid() -> None:
    reputation = Reputation()
    for n in range(50):
        reputation.reported(W, bytes([n]) * 32, 0.0, weight=0.0)  # paid nothing
    assert reputation.score(W, 0.0) == 0.5
    reputation.reported(W, b"r" * 32, 0.0, weight=1.0)
    assert not reputation.allowed(W, 0.0)
    snapshot = reputation.snapshot(W, 0.0)
    assert snapshot["reports"] == 51 and snapshot["reporters"] == 51
    assert snapshot["last_reason"] == "reported"


def test_errors_and_timeouts_cost_less_than_a_failed_audit() -> None:
    reputation = Reputation()
    reputation.error(W, 0.0)
    reputation.timeout(W, 0.0)
    assert reputation.allowed(W, 0.0)
    assert reputation.score(W, 0.0) < 0.5
    for _ in range(8):
        reputation.timeout(W, 0.0)
    assert not reputation.allowed(W, 0.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Reputation(threshold=0.5)
    with pytest.raises(ValueError):
        Reputation(half_life_s=0)
