"""First-chunk deadlines, sans-IO (proxy/deadlines.py; issue 16, item 4)."""

from __future__ import annotations

from cocoon.proxy.deadlines import DeadlineConfig, FirstChunkDeadlines
from cocoon.proxy.worker_state import WorkerInfo

CONFIG = DeadlineConfig(factor=4.0, floor_s=1.0, cold_s=30.0, drop_after=3)


def worker(key: str) -> WorkerInfo:
    return WorkerInfo(key, frozenset({"m"}), 1000, 4, False)


def test_no_history_for_the_model_gives_the_cold_deadline() -> None:
    deadlines = FirstChunkDeadlines(CONFIG)
    assert deadlines.deadline_s(worker("a"), "m", last_candidate=False) == 30.0


def test_the_last_candidate_has_no_deadline() -> None:
    deadlines = FirstChunkDeadlines(CONFIG)
    assert deadlines.deadline_s(worker("a"), "m", last_candidate=True) is None


def test_a_deadline_is_a_multiple_of_the_workers_own_latency_with_a_floor() -> None:
    deadlines = FirstChunkDeadlines(CONFIG)
    slow, fast = worker("slow"), worker("fast")
    deadlines.answered(slow, "m", 2.0)
    deadlines.answered(fast, "m", 0.01)
    assert deadlines.deadline_s(slow, "m", last_candidate=False) == 8.0
    assert deadlines.deadline_s(fast, "m", last_candidate=False) == 1.0  # the floor
    # A newcomer gets the slowest proven worker's: it may be slow, not silent.
    assert deadlines.deadline_s(worker("new"), "m", last_candidate=False) == 8.0


def test_misses_do_not_stretch_the_deadline_and_drop_the_worker_after_three() -> None:
    deadlines = FirstChunkDeadlines(CONFIG)
    good, silent = worker("good"), worker("silent")
    deadlines.answered(good, "m", 0.5)
    first = deadlines.deadline_s(silent, "m", last_candidate=False)
    assert not deadlines.missed(silent)
    assert not deadlines.missed(silent)
    assert deadlines.deadline_s(silent, "m", last_candidate=False) == first
    assert deadlines.missed(silent)


def test_an_answer_in_time_forgives_the_misses() -> None:
    deadlines = FirstChunkDeadlines(CONFIG)
    w = worker("w")
    deadlines.missed(w)
    deadlines.missed(w)
    deadlines.answered(w, "m", 0.1)
    assert not deadlines.missed(w)
