"""A node told to take its proxies from the root, with no root to read, says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("role", ["client", "worker"])
def test_proxies_from_the_root_without_a_root_is_one_line_and_exit_1(
    role: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cocoon.cli", role, "--proxies", "root"]
        + ["--data-dir", str(tmp_path), "--allow-untrusted"]
        + (["--listen", "127.0.0.1:0"] if role == "client" else ["--http", "127.0.0.1:0"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith('cocoon: error: root: proxies = ["root"] needs the root')
    assert "Traceback" not in done.stderr
