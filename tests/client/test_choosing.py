"""Which workers a request may be sealed to: tier, reputation, load."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from cocoon.audit.reputation import Reputation
from cocoon.client.choosing import Selection, choose
from cocoon.client.directory import VerifiedWorker
from cocoon.client.errors import ClientError
from cocoon.crypto.sealing import Recipient
from cocoon.registry.tiers import Tier, parse_tier
from cocoon.tee.evidence import Verdict


def worker(
    n: int, *, active: int = 0, gpu: str = "", region: str = "", coefficient: int = 1000
) -> VerifiedWorker:
    key = bytes([n]) * 32
    return VerifiedWorker(
        key_id=f"w{n}",
        public_key=key,
        recipient=Recipient(key_id=f"w{n}", suite="s", public_key=key),
        models=frozenset({"m"}),
        coefficient_milli=coefficient,
        max_active_requests=4,
        active=active,
        verdict=Verdict(trusted=True, provider="sim-tdx", reason="ok"),
        gpu_evidence=gpu,
        region=region,
    )


def firsts(workers: list[VerifiedWorker], runs: int = 2000, **kw: object) -> Counter[str]:
    rng = random.Random(7)
    return Counter(
        choose(workers, "m", 1000, 1, rng=rng, now=0.0, **kw)[0].key_id  # type: ignore[arg-type]
        for _ in range(runs)
    )


def test_free_workers_come_first_but_a_busy_one_is_not_starved() -> None:
    counts = firsts([worker(1, active=4), worker(2, active=0)])
    assert counts["w2"] > 1800
    assert counts["w1"] > 0


def test_reputation_weighs_the_order_and_excludes_below_the_threshold() -> None:
    reputation = Reputation()
    good, doubted = worker(1), worker(2)
    for _ in range(10):
        reputation.audit_passed(good.public_key, 0.0)
    counts = firsts([good, doubted], reputation=reputation)
    assert counts["w1"] > counts["w2"] > 0
    reputation.audit_failed(doubted.public_key, 0.0)
    assert not reputation.allowed(doubted.public_key, 0.0)
    assert firsts([good, doubted], runs=200, reputation=reputation) == {"w1": 200}
    with pytest.raises(ClientError) as caught:
        choose([doubted], "m", 1000, 3, reputation=reputation, now=0.0)
    assert caught.value.code == "reputation_too_low"


def test_tiers_keep_to_workers_whose_claims_qualify() -> None:
    plain, gpu, german = worker(1), worker(2, gpu="sim:sha256:00"), worker(3, region="DE")
    everyone = [plain, gpu, german]
    chosen = choose(everyone, "m", 1000, 3, Selection(parse_tier("tee+gpu")))
    assert chosen == [gpu]
    assert choose(everyone, "m", 1000, 3, Selection(parse_tier("region=de"))) == [german]
    with pytest.raises(ClientError) as caught:
        choose(everyone, "m", 1000, 3, Selection(parse_tier("tee+gpu,region=FR")))
    assert caught.value.code == "tier_unavailable"
    assert "region" in caught.value.message


def test_only_and_exclude_name_workers_outright() -> None:
    a, b, c = worker(1), worker(2), worker(3)
    assert choose([a, b, c], "m", 1000, 3, Selection(only=frozenset({b.public_key}))) == [b]
    picked = choose([a, b, c], "m", 1000, 3, Selection(exclude=frozenset({a.public_key})))
    assert sorted(w.key_id for w in picked) == ["w2", "w3"]


def test_a_price_bound_below_every_worker_is_no_capacity() -> None:
    with pytest.raises(ClientError) as caught:
        choose([worker(1, coefficient=2000)], "m", 1000, 3)
    assert caught.value.code == "no_capacity"


def test_tiers_parse_and_travel_in_one_canonical_form() -> None:
    assert parse_tier("") == Tier()
    assert Tier().wire() == ""
    assert parse_tier(" Audited ").wire() == "audited"
    assert parse_tier("tee+gpu, region=de") == Tier("tee+gpu", "DE")
    assert parse_tier(parse_tier("replicated,region=FR").wire()) == Tier("replicated", "FR")
    assert parse_tier("region=FR").wire() == "tee,region=FR"
    assert parse_tier("replicated").replicas == 3
    for bad in ("gold", "audited,replicated", "region=FRA", "region=1X", "region=DE,region=FR"):
        with pytest.raises(ValueError):
            parse_tier(bad)
