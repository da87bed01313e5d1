"""Verified work as `cocoon up` runs it (DESIGN §11): one dishonest worker among honest
ones, driven by the OpenAI SDK at the default audit rate, loses its traffic to audits
and its stake to the verifiers' verdicts; the honest ones keep theirs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from .conftest import cocoon_json, get_json, start_up, stop_up, wait_for

pytestmark = pytest.mark.slow

DISPUTE_S = 3


def test_a_dishonest_worker_loses_its_traffic_and_its_stake(tmp_path: Path) -> None:
    up = start_up(
        tmp_path / ".cocoon",
        *("--payments", "--workers", "3", "--dishonest", "1", "--lie-rate", "0.5"),
        *("--dispute-delay", str(DISPUTE_S)),
        audits=True,
    )
    try:
        stats_url = up.base_url.removesuffix("/v1") + "/jsonstats"
        assert "DISHONEST" in up.printed["worker3"]
        liar = get_json(up.printed["worker3"].split(" · stats ")[1].split(" ")[0])
        liar_key = liar["node"]["key_id"]
        before = {r["node"]: r for r in cocoon_json(tmp_path, "stake", "show")}
        client = openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0)
        model = up.models[0]
        sent = 0
        # Bounded: at the default rate (newcomers audited 10x) the liar falls within
        # a few dozen of its answers (after five lucky passes, a few hundred); 1,500
        # requests leave a wide margin.
        while sent < 1500:
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"question {sent}: tell me a story"}],
                max_tokens=24,
            )
            sent += 1
            if sent % 10 == 0:
                reputation = get_json(stats_url)["reputation"]["workers"]
                if any(w["key_id"] == liar_key and not w["allowed"] for w in reputation.values()):
                    break
        stats = get_json(stats_url)
        assert stats["audits"]["failed"] >= 1, (sent, stats["audits"])
        served: set[str] = set()
        for n in range(30):
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": f"after {n}"}], max_tokens=4
            )
            served.add(raw.headers["x-cocoon-worker"])
        assert liar_key not in served and len(served) == 2

        # The verifiers (the two honest workers) judged the evidence; the slash waited
        # its dispute window and was executed.
        def slashed() -> dict[str, Any] | None:
            rows = {r["node"]: r for r in cocoon_json(tmp_path, "stake", "show")}
            return rows if rows["worker3"]["slashed_nano"] > 0 else None

        after = wait_for(slashed, 60 + DISPUTE_S, interval=1.0)
        lost = before["worker3"]["bonded_nano"] - after["worker3"]["bonded_nano"]
        assert lost == after["worker3"]["slashed_nano"] > 0
        for honest in ("worker1", "worker2"):
            assert after[honest]["slashed_nano"] == 0
            assert after[honest]["bonded_nano"] == before[honest]["bonded_nano"]
        verdicts = get_json(stats_url)["verdicts"]
        assert verdicts["submitted"] >= 1 and verdicts["executed"] >= 1, verdicts
    finally:
        assert stop_up(up) == 0
    _ = time
