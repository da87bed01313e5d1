"""Receipt seqs: no two runs of a worker share one, across restarts too."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cocoon.worker.receipt_seqs import BOOT_FILE, MAX_BOOT, ReceiptSeqs, SeqError


def test_runs_and_boots_never_share_a_seq(tmp_path: Path) -> None:
    first = ReceiptSeqs(tmp_path)
    bases = [first.next_run() for _ in range(3)]
    again = ReceiptSeqs(tmp_path)  # the worker restarted
    bases += [again.next_run() for _ in range(3)]
    assert bases == sorted(bases) and len(set(bases)) == 6
    # Each run has room for 65,536 receipts before the next run's base.
    assert all(b - a >= 2**16 for a, b in itertools.pairwise(bases))
    assert again.boot == first.boot + 1
    assert max(bases) < 2**63


def test_a_spoiled_or_exhausted_counter_stops_the_worker(tmp_path: Path) -> None:
    (tmp_path / BOOT_FILE).write_text("not a number")
    with pytest.raises(SeqError):
        ReceiptSeqs(tmp_path)
    (tmp_path / BOOT_FILE).write_text(str(MAX_BOOT))
    with pytest.raises(SeqError):
        ReceiptSeqs(tmp_path)
