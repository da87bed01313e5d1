"""The proxy's SQLite ledger: one row per request, billed from signed receipts.

A request is billed once, whatever happens: the request id is the primary
key, and a receipt only replaces the one on file when its sequence number is
higher (a final receipt supersedes the partial ones a worker signs while
streaming). Every write is atomic (in the transaction of its event-loop turn,
`commits.py`), so a crash leaves the row either before or after the receipt,
never half-written.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple, Protocol

from ..crypto.receipts import Receipt
from .commits import GroupCommit
from .new_rows import insert_all
from .store import open_book

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    request_id TEXT PRIMARY KEY,
    client_key TEXT NOT NULL,
    worker_key TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cached_prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    coefficient_milli INTEGER NOT NULL,
    amount_nano INTEGER NOT NULL CHECK (amount_nano >= 0),
    receipt_seq INTEGER NOT NULL,
    final INTEGER NOT NULL,
    receipt BLOB NOT NULL,
    updated_at REAL NOT NULL
);
-- Per-client and per-worker sums scan the table anyway; indexes on those
-- columns cost every request two more b-tree writes (22 of 58 µs a request),
-- so ledgers made before this are rid of them.
DROP INDEX IF EXISTS charges_client;
DROP INDEX IF EXISTS charges_worker;
"""


@dataclass(frozen=True)
class Totals:
    """Sums over the ledger."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    amount_nano: int


_RECORD = """
INSERT INTO charges VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (request_id) DO UPDATE SET
    prompt_tokens = excluded.prompt_tokens,
    cached_prompt_tokens = excluded.cached_prompt_tokens,
    completion_tokens = excluded.completion_tokens,
    reasoning_tokens = excluded.reasoning_tokens,
    amount_nano = excluded.amount_nano,
    receipt_seq = excluded.receipt_seq,
    final = excluded.final,
    receipt = excluded.receipt,
    updated_at = excluded.updated_at
WHERE excluded.receipt_seq > charges.receipt_seq
  AND charges.final = 0
  AND excluded.worker_key = charges.worker_key
"""


class Charge(NamedTuple):
    """One receipt to bill: who asked, who served, at what coefficient and amount."""

    receipt: Receipt
    receipt_bytes: bytes
    client_key: str
    worker_key: str
    coefficient_milli: int
    amount_nano: int


# A charge as the ledger's row holds it (and the proxy's journal of bills), and where
# the fields others read sit in it (`charge_row`).
ChargeRow = tuple[str, str, str, str, int, int, int, int, int, int, int, int, bytes, float]
ROW_REQUEST_ID: Final = 0
ROW_SEQ: Final = 10
ROW_RECEIPT: Final = 12


class HeldCharges(Protocol):
    """Charges written elsewhere first (the proxy's journal of bills, bill_journal.py),
    folded into the ledger's rows later."""

    def held_receipt(self, request_id: str) -> bytes | None: ...

    def fold(self) -> None: ...


def charge_row(charge: Charge, now: float) -> ChargeRow:
    """The ledger's row for one charge."""
    receipt = charge.receipt
    return (
        receipt.request_id,
        charge.client_key,
        charge.worker_key,
        receipt.model,
        receipt.prompt_tokens,
        receipt.cached_prompt_tokens,
        receipt.completion_tokens,
        receipt.reasoning_tokens,
        charge.coefficient_milli,
        charge.amount_nano,
        receipt.seq,
        int(receipt.final),
        charge.receipt_bytes,
        now,
    )


class Ledger:
    """Billing records of one proxy, in SQLite with write-ahead logging."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = open_book(self.path)
        self._db.executescript(_SCHEMA)
        # Charges are committed with the other writes of the loop's turn: the frame
        # carrying a receipt leaves once `durable()` returns.
        self.commits = GroupCommit(self._db)
        # With payments on, new charges are journaled first: what reads one request
        # looks there too, what reads the rows as a whole has them folded in first.
        self.held: HeldCharges | None = None

    async def durable(self) -> None:
        """Return once every charge written so far is on disk."""
        await self.commits.durable()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for a PaymentBook that must write in the same transactions."""
        return self._db

    def close(self) -> None:
        self.commits.close()
        self._db.close()

    def record(
        self,
        receipt: Receipt,
        receipt_bytes: bytes,
        *,
        client_key: str,
        worker_key: str,
        coefficient_milli: int,
        amount_nano: int,
        now: float | None = None,
    ) -> bool:
        """Bill a request from a receipt; True if this receipt changed the ledger."""
        charge = Charge(
            receipt, receipt_bytes, client_key, worker_key, coefficient_milli, amount_nano
        )
        return self.record_row(charge_row(charge, time.time() if now is None else now))

    def record_row(self, row: ChargeRow) -> bool:
        """`record` for a charge's row (the journal's): True if it changed the ledger (a
        receipt of a later sequence number, or the request's first)."""
        with self.commits.write() as db:
            return db.execute(_RECORD, row).rowcount > 0

    def record_all(self, charges: list[Charge]) -> bool:
        """`record` for many receipts in one statement: True if each changed the ledger
        (the proxy's turn of new requests, payments/turns.py). Else nothing is written:
        False, and the caller records them one by one."""
        now = time.time()
        return self.record_rows([charge_row(charge, now) for charge in charges])

    def record_rows(self, rows: list[ChargeRow]) -> bool:
        """`record_all` for charges' rows."""
        with self.commits.write() as db:
            return insert_all(db, _RECORD, rows)

    def _fold(self) -> None:
        if self.held is not None:
            self.held.fold()

    def billed(self, request_id: str) -> bool:
        """Whether a request id has a row (the proxy's duplicate check, per request)."""
        if self.held is not None and self.held.held_receipt(request_id) is not None:
            return True
        return (
            self._db.execute("SELECT 1 FROM charges WHERE request_id = ?", (request_id,)).fetchone()
            is not None
        )

    def receipt(self, request_id: str) -> bytes | None:
        """The receipt a request was billed from, or None."""
        if self.held is not None and (held := self.held.held_receipt(request_id)) is not None:
            return held
        row = self._db.execute(
            "SELECT receipt FROM charges WHERE request_id = ?", (request_id,)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def charge(self, request_id: str) -> dict[str, object] | None:
        """The row billed for one request, or None."""
        self._fold()
        self._db.row_factory = sqlite3.Row
        try:
            row = self._db.execute(
                "SELECT * FROM charges WHERE request_id = ?", (request_id,)
            ).fetchone()
        finally:
            self._db.row_factory = None
        return dict(row) if row is not None else None

    def totals(self) -> Totals:
        self._fold()
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
            " COALESCE(SUM(amount_nano),0) FROM charges"
        ).fetchone()
        return Totals(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def paid_between(self, client_key: str, worker_key: str) -> int:
        """What one client was billed for one worker's answers (a scan: for reports,
        which are rare)."""
        self._fold()
        row = self._db.execute(
            "SELECT COALESCE(SUM(amount_nano),0) FROM charges"
            " WHERE client_key = ? AND worker_key = ?",
            (client_key, worker_key),
        ).fetchone()
        return int(row[0])

    def totals_by(self, column: str) -> dict[str, int]:
        """Amount billed per client_key or per worker_key."""
        if column not in ("client_key", "worker_key"):
            raise ValueError(f"cannot group by {column}")
        self._fold()
        rows = self._db.execute(
            f"SELECT {column}, SUM(amount_nano) FROM charges GROUP BY {column}"
        ).fetchall()
        return {str(key): int(amount) for key, amount in rows}
