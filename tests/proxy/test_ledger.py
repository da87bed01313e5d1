"""The ledger bills a request once, from its highest receipt, and never lowers a final one."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.crypto.receipts import Receipt
from cocoon.payments.ledger import Ledger


def receipt(seq: int, completion: int, final: bool, request_id: str = "r1") -> Receipt:
    return Receipt(
        network="n",
        request_id=request_id,
        model="m",
        worker_key=b"k" * 32,
        prompt_tokens=5 if final else 0,
        completion_tokens=completion,
        request_hash=b"h" * 32,
        answer_hash=b"a" * 32,
        answer_chunks=completion,
        final=final,
        started_ms=1,
        finished_ms=2,
        seq=seq,
    )


def record(ledger: Ledger, r: Receipt, worker: str = "w1") -> bool:
    return ledger.record(
        r,
        b"signed",
        client_key="c1",
        worker_key=worker,
        coefficient_milli=1000,
        amount_nano=r.completion_tokens * 10,
        now=0.0,
    )


def test_higher_receipt_replaces_lower(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    assert record(ledger, receipt(0, 1, False))
    assert record(ledger, receipt(1, 16, False))
    assert not record(ledger, receipt(1, 16, False)), "a replayed receipt changes nothing"
    assert not record(ledger, receipt(0, 1, False)), "an older receipt changes nothing"
    assert record(ledger, receipt(2, 20, True))
    row = ledger.charge("r1")
    assert row is not None
    assert (row["completion_tokens"], row["final"], row["amount_nano"]) == (20, 1, 200)
    assert ledger.totals().requests == 1


def test_final_receipt_is_never_replaced(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    record(ledger, receipt(1, 10, True))
    assert not record(ledger, receipt(5, 99, False))
    assert ledger.totals().amount_nano == 100


def test_another_worker_cannot_take_over_a_billed_request(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    record(ledger, receipt(0, 3, False), worker="w1")
    assert not record(ledger, receipt(1, 50, True), worker="w2")
    assert ledger.totals_by("worker_key") == {"w1": 30}


def test_ledger_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = Ledger(path)
    record(ledger, receipt(0, 7, True))
    ledger.close()
    assert Ledger(path).totals().amount_nano == 70


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 100)), min_size=1, max_size=20))
def test_any_receipt_order_bills_the_highest_sequence(tmp_path_factory, events) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(tmp_path_factory.mktemp("l") / "l.sqlite")
    # Cumulative receipts: a higher sequence never has fewer tokens.
    by_seq = {seq: tokens for seq, tokens in sorted(events)}
    cumulative = 0
    for seq in sorted(by_seq):
        cumulative = max(cumulative, by_seq[seq])
        by_seq[seq] = cumulative
    for seq, _ in events:
        record(ledger, receipt(seq, by_seq[seq], False))
    top = max(by_seq)
    row = ledger.charge("r1")
    assert row is not None
    assert row["receipt_seq"] == top
    assert row["completion_tokens"] == by_seq[top]
    assert ledger.totals().requests == 1
