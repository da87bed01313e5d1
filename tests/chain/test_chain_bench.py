"""`cocoon bench chain` runs end to end with a tiny load (a smoke test, not a timing)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cocoon.cli import app
from harness.chain import NEEDS_LOCAL_CHAIN

pytestmark = NEEDS_LOCAL_CHAIN


def test_bench_chain_smoke(tmp_path: Path) -> None:
    args = ["bench", "chain", "--wallets", "2", "--transfers", "4", "--redeems", "4"]
    r = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "chain"), "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    report = json.loads(r.stdout)
    for phase in ("transfers", "redeems"):
        p = report["phases"][phase]
        assert p["operations"] == 4 and p["ops_per_s"] > 0
        assert p["latency_p50_ms"] <= p["latency_p99_ms"] <= p["latency_max_ms"]
    # A transfer is 2 transactions (wallet, payee); a redeem 3 (payee wallet, channel, payout).
    assert report["phases"]["transfers"]["chain_transactions"] == 8
    assert report["phases"]["redeems"]["chain_transactions"] == 12
    assert report["state_bytes"] > 0 and "state.json" in report["state_files"]
