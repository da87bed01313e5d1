"""Receipt sequence numbers no other receipt of this worker ever had.

A worker that signs two different receipts for one (request, seq) has
equivocated, and anyone holding both can slash its stake (DESIGN §11). An honest
worker must therefore never reuse a slot, whatever a client does: send one
request id through two proxies at once, again after the worker restarted, or
after enough other requests that the worker forgot it. So a receipt's seq is
not counted from 0 per request but from a base that is new for every run:

    seq = boot << 48 | run << 16 | index

`boot` counts the worker's starts (kept in its data folder, written once per
start), `run` the runs of requests since (any request, in order), `index` the
receipts of one run (at most 65,536: a receipt rides every `receipt_every`
chunks). Seqs rise within a run, as payers and payees expect, and no two runs
share one.
"""

from __future__ import annotations

import os
from pathlib import Path

BOOT_FILE = "receipt-boot"
RUN_BITS = 32
INDEX_BITS = 16
# Below 2**63: a seq is stored as a signed 64-bit integer in the payment books.
MAX_BOOT = 2**15 - 1


class SeqError(RuntimeError):
    """The worker's boot counter is exhausted or unreadable."""


class ReceiptSeqs:
    """Hands out the first seq of each run."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / BOOT_FILE
        try:
            previous = int(path.read_text().strip()) if path.exists() else 0
        except ValueError as exc:
            raise SeqError(f"{path} does not hold a boot counter: {exc}") from exc
        self.boot = previous + 1
        if self.boot > MAX_BOOT:
            raise SeqError(
                f"this worker's identity has started {previous} times: make it a new one"
                f" (a new data folder) so that its receipts stay unique"
            )
        # Written (and synced) before any receipt of this boot is signed.
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w") as file:
            file.write(f"{self.boot}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        self._run = 0

    def next_run(self) -> int:
        """The first seq of a new run."""
        if self._run >= 2**RUN_BITS:
            raise SeqError("this boot has run 2**32 requests: restart the worker")
        run = self._run
        self._run += 1
        return self.boot << (RUN_BITS + INDEX_BITS) | run << INDEX_BITS
