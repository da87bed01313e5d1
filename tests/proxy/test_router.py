from __future__ import annotations

from cocoon.proxy.router import Router, WorkerInfo


def worker(
    key: str, *, models: tuple[str, ...] = ("m",), coef: int = 1000, cap: int = 4
) -> WorkerInfo:
    return WorkerInfo(
        key_id=key,
        models=frozenset(models),
        coefficient_milli=coef,
        max_active_requests=cap,
        trusted=False,
    )


def test_candidates_are_filtered_by_model_price_and_client_choice() -> None:
    router = Router()
    for w in (worker("a"), worker("b", coef=3000), worker("c", models=("other",)), worker("d")):
        router.add(w)
    found = router.candidates("m", 2000, ["a", "b", "c", "x"])
    assert [w.key_id for w in found] == ["a"]


def test_free_capacity_and_latency_rank_candidates() -> None:
    router = Router()
    fast, slow, full = worker("fast"), worker("slow"), worker("full", cap=1)
    for w in (fast, slow, full):
        router.add(w)
    router.record_first_chunk(fast, 5.0)
    router.record_first_chunk(slow, 50.0)
    full.active = 1
    assert [w.key_id for w in router.candidates("m", 10**6, ["full", "slow", "fast"])] == [
        "fast",
        "slow",
        "full",
    ]
    fast.active = 4  # full now
    assert router.candidates("m", 10**6, ["slow", "fast"])[0].key_id == "slow"


def test_latency_is_a_moving_average() -> None:
    router = Router()
    w = worker("a")
    router.record_first_chunk(w, 100.0)
    router.record_first_chunk(w, 0.0)
    assert 0 < w.first_chunk_ewma_ms < 100


def test_remove_ignores_a_stale_channel() -> None:
    router = Router()
    w = worker("a")
    w.channel = object()
    router.add(w)
    router.remove("a", channel=object())
    assert "a" in router.workers
    router.remove("a", channel=w.channel)
    assert not router.serves("m")
