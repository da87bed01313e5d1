"""A short coverage-guided run of every atheris target (the long runs: atheris_run.py).

Each target runs in its own process, because libFuzzer owns the process it
fuzzes in and exits it when done.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for Linux x86_64, Python 3.11-3.13 only")

HARNESS = Path(__file__).with_name("atheris_run.py")
RUNS = int(os.environ.get("COCOON_ATHERIS_RUNS", "20000"))
TARGETS = ["frames", "messages", "openai", "responses", "tdx_quote", "receipts", "vouchers"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_target_survives_a_short_coverage_guided_run(target: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            target,
            f"-runs={RUNS}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"Done {RUNS} runs" in run.stderr
    assert not list(tmp_path.glob("crash-*"))
    assert any(tmp_path.joinpath("corpus").glob("seed-*")), "the seeds went into the corpus given"


def test_an_unknown_target_is_refused_with_the_usage() -> None:
    run = subprocess.run(
        [sys.executable, str(HARNESS), "nope"], capture_output=True, text=True, check=False
    )
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith("usage:")
