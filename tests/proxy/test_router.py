"""The router's rules one by one: filters, tiers, the two choices, estimates, penalties."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from cocoon.proxy.router import Router, RouterConfig
from cocoon.proxy.worker_state import WorkerInfo, waited_ms

NO_CAP = RouterConfig(max_share=1.0)


def worker(
    key: str,
    *,
    models: tuple[str, ...] = ("m",),
    coef: int = 1000,
    cap: int = 4,
    operator: str = "",
) -> WorkerInfo:
    return WorkerInfo(
        key_id=key,
        models=frozenset(models),
        coefficient_milli=coef,
        max_active_requests=cap,
        trusted=False,
        operator=operator,
    )


def router_with(*workers: WorkerInfo, config: RouterConfig = NO_CAP, seed: int = 1) -> Router:
    router = Router(config, random.Random(seed))
    for w in workers:
        router.add(w)
    return router


def answer(router: Router, w: WorkerInfo, now: float, latency_s: float) -> float:
    """One request to `w` at `now`, answered after `latency_s`; returns when it ended."""
    assignment = router.dispatch(w, "m", now)
    router.record_first_chunk(assignment, now + latency_s)
    router.settle(assignment, now + latency_s)
    return now + latency_s


def first_picks(router: Router, allowed: list[str], n: int, now: float = 0.0) -> Counter[str]:
    """Who comes first in `n` rankings of an unchanging state."""
    return Counter(router.candidates("m", 10**6, allowed, now=now)[0].key_id for _ in range(n))


def test_candidates_are_filtered_by_model_price_and_client_choice() -> None:
    router = router_with(
        worker("a"), worker("b", coef=3000), worker("c", models=("o",)), worker("d")
    )
    found = router.candidates("m", 2000, ["a", "b", "c", "x", "a"], now=0.0)
    assert [w.key_id for w in found] == ["a"]


def test_full_workers_go_last() -> None:
    fast, slow, full = worker("fast"), worker("slow"), worker("full", cap=1)
    router = router_with(fast, slow, full)
    answer(router, fast, 0.0, 0.005)
    answer(router, slow, 0.0, 0.050)
    answer(router, full, 0.0, 0.001)  # the fastest, but busy
    router.dispatch(full, "m", 1.0)
    for _ in range(50):
        ranked = router.candidates("m", 10**6, ["full", "slow", "fast"], now=1.0)
        assert ranked[-1] is full
        assert {w.key_id for w in ranked} == {"fast", "slow", "full"}


def test_two_choices_never_lead_with_the_worst_and_favour_the_best() -> None:
    # Three workers with fixed, distinct costs: the pair drawn is uniform, the cheaper
    # of the pair leads. So the best leads 2/3 of the time, the middle 1/3, the worst never.
    ws = [worker("best"), worker("mid"), worker("worst")]
    router = router_with(*ws)
    for w, latency in zip(ws, (0.010, 0.020, 0.040), strict=True):
        answer(router, w, 0.0, latency)
    picks = first_picks(router, ["best", "mid", "worst"], 3000, now=0.05)
    assert picks["worst"] == 0
    assert 0.62 < picks["best"] / 3000 < 0.71
    assert 0.29 < picks["mid"] / 3000 < 0.38


def test_the_ranking_is_the_same_for_the_same_seed() -> None:
    def picks(seed: int) -> list[str]:
        router = router_with(worker("a"), worker("b"), worker("c"), seed=seed)
        return [
            router.candidates("m", 10**6, ["a", "b", "c"], now=0.0)[0].key_id for _ in range(30)
        ]

    assert picks(7) == picks(7)
    assert len(set(picks(7))) > 1


def test_latency_is_a_moving_average() -> None:
    w = worker("a")
    router = router_with(w)
    answer(router, w, 0.0, 0.100)
    answer(router, w, 1.0, 0.0)
    assert 0 < w.first_chunk_ewma_ms < 100
    assert w.served == 2


def test_a_stale_estimate_decays_toward_the_prior_with_time_and_with_requests() -> None:
    fast, slow = worker("fast"), worker("slow")
    router = router_with(fast, slow)
    answer(router, fast, 0.0, 0.010)
    answer(router, slow, 0.0, 1.000)  # one slow first answer
    prior = 0.5 * 10.0
    assert router.expected_ms(slow, "m", 1.0) > 900
    # A minute later (one half-life) it is halfway back, in ratio: sqrt(1000 / 5) x 5.
    assert router.expected_ms(slow, "m", 61.0) == pytest.approx((1000 / prior) ** 0.5 * prior)
    # Ten minutes later (ten half-lives) it is all but forgotten.
    assert router.expected_ms(slow, "m", 601.0) < prior * 1.01
    # Or, at once, after ten half-lives of requests routed elsewhere.
    now = 1.0
    for _ in range(100):
        now = answer(router, fast, now, 0.010)
    assert router.expected_ms(slow, "m", now) < prior * 1.01


def test_a_newcomer_is_probed_once_and_ranks_as_the_slowest_until_it_answers() -> None:
    old, new = worker("old"), worker("new")
    router = router_with(old, new)
    answer(router, old, 0.0, 0.020)
    # No history: expected to take what the slowest proven worker takes now, never
    # less (issue 16: a worker that never answers would otherwise win everything).
    assert router.expected_ms(new, "m", 1.0) == router.expected_ms(old, "m", 1.0)
    # Yet it gets the next request, so a worker that joins is tried at once.
    assert first_picks(router, ["old", "new"], 20, now=1.0) == {"new": 20}
    # Only that one: while it holds a request it has not answered, it costs more than
    # the proven one, and the longer it stays silent the more it costs.
    probe = router.dispatch(new, "m", 1.0)
    assert first_picks(router, ["old", "new"], 20, now=1.015) == {"old": 20}
    assert router.expected_ms(new, "m", 2.0) == 1000.0
    # Answered, it competes on its measured latency like any other.
    router.record_first_chunk(probe, 1.020)
    router.settle(probe, 1.020)
    assert router.expected_ms(new, "m", 1.1) == pytest.approx(20.0, rel=0.01)
    assert first_picks(router, ["old", "new"], 20, now=1.1) == {"old": 20}  # a bit fresher


def test_a_burst_gives_a_newcomer_its_probe_first_and_no_more_than_an_even_share() -> None:
    old, new = worker("old"), worker("new")
    router = router_with(old, new)
    answer(router, old, 0.0, 0.020)
    firsts = []
    for _ in range(8):  # eight requests arrive before anyone answers
        chosen = router.candidates("m", 10**6, ["old", "new"], now=1.0)[0]
        router.dispatch(chosen, "m", 1.0)
        firsts.append(chosen.key_id)
    assert firsts[0] == "new"
    # After the probe, the pending term ranks it: requests it has not answered weigh
    # as heavily as the proven worker's.
    assert firsts.count("new") <= 4, firsts


def test_a_newcomer_never_leads_before_a_faster_proven_worker() -> None:
    fast, slow, new = worker("fast"), worker("slow"), worker("new")
    router = router_with(fast, slow, new)
    for step in range(5):
        answer(router, fast, step, 0.010)
        answer(router, slow, step, 0.040)
    for now in (5.0, 50.0, 500.0):
        expected = {w.key_id: router.expected_ms(w, "m", now) for w in (fast, slow, new)}
        assert expected["fast"] <= expected["new"], expected
        assert expected["new"] == max(expected["fast"], expected["slow"])


def test_a_request_that_ends_unanswered_counts_as_at_least_that_slow() -> None:
    w, other = worker("w"), worker("other")
    router = router_with(w, other)
    answer(router, w, 0.0, 0.020)
    answer(router, other, 0.0, 0.020)
    # A client that gives up early says nothing about the worker.
    early = router.dispatch(w, "m", 1.0)
    router.settle(early, 1.001)
    assert w.penalty == 0
    assert router.expected_ms(w, "m", 1.001) <= 20.0
    # A timeout says: at least 5 s, and counts as a failure.
    late = router.dispatch(w, "m", 2.0)
    router.settle(late, 7.0)
    assert router.expected_ms(w, "m", 7.0) >= 4999
    assert w.penalty == 1.0
    assert w.failures == 0  # the worker broke nothing: it was slow
    assert w.active == 0 and not w.pending


def test_failures_back_off_exponentially_and_decay() -> None:
    w, other = worker("w"), worker("other")
    router = router_with(w, other)
    penalties = []
    for i in range(4):
        failed = router.dispatch(w, "m", float(i))
        failed.failed = True
        router.settle(failed, float(i))
        penalties.append(round(w.penalty, 2))
    # 1, then doubling increments (each a little decayed): a dead worker is probed
    # less and less often.
    assert penalties[0] == 1.0
    assert all(b > 2 * a for a, b in itertools.pairwise(penalties))
    assert w.failures == 4
    assert router._penalty(w, 3.0 + 30 * 10) < penalties[-1] / 2**9
    # An answer ends the streak; the penalty it left keeps decaying.
    answer(router, w, 400.0, 0.010)
    assert w.failure_streak == 0


def test_routing_shares_are_reported_per_model() -> None:
    a, b = worker("a"), worker("b")
    router = router_with(a, b)
    for i in range(3):
        answer(router, a, float(i), 0.01)
    answer(router, b, 5.0, 0.01)
    assert router.shares() == {"m": {"a": 0.75, "b": 0.25}}


def test_the_window_forgets_departed_workers() -> None:
    router = router_with(config=RouterConfig(window=10))
    for i in range(100):
        w = worker(f"w{i}")
        router.add(w)
        answer(router, w, float(i), 0.01)
        router.remove(w.key_id)
    assert len(router.shares()["m"]) == 10
    assert len(router._traffic["m"].by_worker) == 10


def test_remove_ignores_a_stale_channel() -> None:
    router = Router()
    w = worker("a")
    w.channel = object()
    router.add(w)
    router.remove("a", channel=object())
    assert "a" in router.workers
    router.remove("a", channel=w.channel)
    assert not router.serves("m")


def test_the_operator_is_the_key_id_without_a_wallet() -> None:
    assert worker("k").operator == "k"
    assert worker("k", operator="EQwallet").operator == "EQwallet"


def test_a_reconnect_takes_over_the_old_connections_requests() -> None:
    old = worker("k")
    router = router_with(old)
    inflight = router.dispatch(old, "m", 0.0)
    new = worker("k")
    new.active = old.active  # as the service does
    router.add(new)
    assert new.active == 1 and new.pending == [inflight]
    router.settle(inflight, 1.0)
    router.settle(inflight, 1.0)  # twice is once
    assert new.active == 0 and not new.open


def test_a_worker_cannot_shed_its_penalty_by_reconnecting() -> None:
    w, other = worker("w"), worker("other")
    router = router_with(w, other)
    answer(router, w, 0.0, 0.5)
    failed = router.dispatch(w, "m", 1.0)
    failed.failed = True
    router.settle(failed, 1.0)
    router.remove("w")
    back = worker("w")
    router.add(back)
    assert back.penalty == 1.0 and back.failure_streak == 1
    assert router.expected_ms(back, "m", 1.0) > 400  # its slow answer, too


def test_the_wait_is_the_oldest_request_still_waiting_however_they_end() -> None:
    """What routing reads of a worker's open requests, kept as they start, answer
    and end (not scanned for each request)."""
    w = worker("w", cap=8)
    router = router_with(w)
    a, b, c = (router.dispatch(w, "m", t) for t in (0.0, 1.0, 2.0))
    assert waited_ms(w, 4.0) == 4000 and w.pending == [a, b, c]
    router.record_first_chunk(a, 3.0)  # the oldest answers: the next oldest counts
    assert waited_ms(w, 4.0) == 3000 and w.pending == [b, c]
    router.settle(b, 4.0)  # ends unanswered
    assert waited_ms(w, 4.0) == 2000 and w.pending == [c]
    router.record_first_chunk(c, 5.0)
    assert waited_ms(w, 6.0) == 0 and not w.pending
    assert w.active == 2 and list(w.open) == [a, c]
    for done in (a, c):
        router.settle(done, 6.0)
    assert w.active == 0 and not w.open
