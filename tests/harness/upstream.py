"""`cocoon upstream` as a process of its own, on a port the OS gives it.

A port found free and handed to a process later can be taken in between, by
another test's server or by an outgoing connection (the suite runs on several
processes at once), so the upstream binds port 0 and says which port it got.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

_SERVING = re.compile(rb"upstream on (http://\S+/v1)")


def start_upstream(
    log_path: Path, *args: str, timeout_s: float = 20.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `cocoon upstream ARGS` logging to `log_path`; the process and its base URL
    once it serves. AssertionError, with the log's end, if it stops or is not up in time."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cocoon.cli", "upstream", "--port", "0", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout_s
    while True:
        found = _SERVING.search(log_path.read_bytes())
        if found is not None:
            return process, found.group(1).decode()
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise AssertionError("cocoon upstream did not start: " + " / ".join(tail))
        time.sleep(0.05)
