"""The payment book's SQLite connection and its channel rows, kept in memory.

The book is the only writer of its tables, so it keeps its channel rows in
memory: read once, updated as it writes them, dropped when a write is rolled
back (`commits.py` says when). With payments on, reads of rows the writer knew
were a quarter of the statements on each node's path. What the book does with
requests and vouchers is in `book.py`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .commits import GroupCommit
from .errors import LedgerError
from .rows import (
    BOOK_VERSION,
    CHANNEL_COLUMNS,
    MIGRATE_PAYER_OWED,
    SCHEMA,
    ChannelRow,
    Side,
    add_columns,
)
from .vouchers import MAX_TOTAL

# Pages of a new book file. Each commit appends every page it changed to the log,
# whole, a system call or two a page. When every request committed its own rows,
# small pages wrote less log (at c=1, 1 KiB pages 2.7 KiB a write, 4 KiB pages
# 10.7 KiB). Now the rows of hundreds of requests go in together (the journals'
# folds), and they fill pages: 4 KiB pages make a quarter of the log frames. At
# c=64 with payments on, the proxy's commits fell from 6.1-6.8 to 3.3-3.7 µs a
# request and its checkpoints from 1.6-2.8 to 0.7-0.8 (`cocoon bench`, CPU timed
# inside the node); a book committed every turn (the proxy's without payments) did
# not move. A book made before keeps its page size (changing it needs a VACUUM
# outside WAL mode).
PAGE_SIZE = 4096


def open_book(path: Path | str) -> sqlite3.Connection:
    """A connection to a book file in WAL mode (made with `PAGE_SIZE` pages if new)."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a no-op once the file has pages
    db.execute("PRAGMA journal_mode=WAL")
    # A commit is in the log, in the OS's cache, when it returns: what kill -9 cannot
    # undo. The log is synced at each checkpoint (`checkpoints.py`).
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA temp_store=MEMORY")
    return db


class ChannelStore:
    """A node's book file (SQLite, WAL) and the channels in it."""

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
        commits: GroupCommit | None = None,
        receipts: Callable[[str, bytes], bytes | None] | None = None,
    ) -> None:
        if isinstance(db, sqlite3.Connection):
            self._db = db
            self._owned = False
        else:
            self._db = open_book(db)
            self._owned = True
        if not -(2**31) <= network_id < 2**31:
            raise LedgerError(f"network id {network_id} is not an int32")
        self._db.executescript(SCHEMA)
        add_columns(self._db)
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version < BOOK_VERSION:
            self._db.execute(MIGRATE_PAYER_OWED)
            self._db.execute(f"PRAGMA user_version = {BOOK_VERSION}")
        # The book's clock for request rows and bulk settles: never runs back, and two
        # stamps are never equal, so "written before a settle" is exact.
        (last,) = self._db.execute("SELECT MAX(settled_at) FROM pay_channels").fetchone()
        self._clock = float(last or 0.0)
        self.network_id = network_id
        self.key = key
        # The receipt to invoice a request with, from its id and what its row keeps:
        # at the proxy, its ledger's where the row keeps none (the ledger holds every
        # receipt it billed, `PaymentBook.owe`); at a worker, its small copy signed
        # again (crypto/kept_receipts.py).
        self.receipts = receipts
        # Shared with the proxy's ledger, which writes in the same transactions.
        self.commits = commits or GroupCommit(self._db)
        self._own_commits = commits is None
        # The channel rows as written (the book is their only writer); a rolled-back
        # write makes them stale, so they are read again.
        self._rows: dict[str, ChannelRow] = {}
        self.commits.on_undone(self._rows.clear)

    def close(self) -> None:
        if self._own_commits:
            self.commits.close()
        if self._owned:
            self._db.close()

    def transaction(self, *, lazy: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        """One atomic write (nests: only the outermost is one), committed with the others
        of this turn of the event loop (`commits.py`; `lazy`: with the next commit
        something needs): await `durable()` before sending what depends on it."""
        return self.commits.write(lazy=lazy)

    async def durable(self) -> None:
        """Return once everything written so far is on disk."""
        await self.commits.durable()

    def commit(self) -> bool:
        """Commit what is written now (for a rare message that must leave at once)."""
        return self.commits.commit()

    def now(self) -> float:
        """The book's clock: wall time, but later than every stamp it gave before."""
        self._clock = max(time.time(), self._clock + 1e-6)
        return self._clock

    # -- channels ------------------------------------------------------------

    def bind(
        self, channel: str, *, side: Side, peer: str, payer_key: bytes, deposit_nano: int
    ) -> ChannelRow:
        """Register a channel (or refresh its peer and on-chain deposit); its vouchers stay."""
        if not 0 <= deposit_nano <= MAX_TOTAL:
            raise LedgerError(f"deposit {deposit_nano} out of range")
        now = time.time()
        with self.transaction() as db:
            row = self.channel(channel)
            if row is not None and (row.side != side or row.payer_key != payer_key):
                raise LedgerError(f"channel {channel} is already in the book with other terms")
            db.execute(
                "INSERT INTO pay_channels (channel, side, peer, payer_key, deposit_nano, seqno,"
                " total_nano, updated_at) VALUES (?,?,?,?,?,0,0,?)"
                " ON CONFLICT (channel) DO UPDATE SET peer = excluded.peer,"
                " deposit_nano = MAX(pay_channels.deposit_nano, excluded.deposit_nano),"
                " updated_at = excluded.updated_at",
                (channel, side, peer, payer_key, deposit_nano, now),
            )
            self._rows.pop(channel, None)
            bound = self.channel(channel)
        assert bound is not None
        return bound

    def set_chain_state(self, channel: str, *, deposit_nano: int, redeemed_nano: int) -> None:
        """What the chain says: deposit and redeemed total (never lowers what is known)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE pay_channels SET deposit_nano = MAX(deposit_nano, ?),"
                " redeemed_nano = MAX(redeemed_nano, ?), updated_at = ? WHERE channel = ?",
                (deposit_nano, redeemed_nano, time.time(), channel),
            )
            self._rows.pop(channel, None)

    def channel(self, channel: str) -> ChannelRow | None:
        row = self._rows.get(channel)
        if row is not None:
            return row
        found = self._db.execute(
            f"SELECT {CHANNEL_COLUMNS} FROM pay_channels WHERE channel = ?", (channel,)
        ).fetchone()
        if found is None:
            return None
        row = self._rows[channel] = ChannelRow(*found)
        return row

    def channels(self, side: Side | None = None) -> list[ChannelRow]:
        query = f"SELECT channel FROM pay_channels{' WHERE side = ?' if side else ''}"
        names = self._db.execute(query + " ORDER BY channel", (side,) if side else ()).fetchall()
        rows = [self.channel(str(name)) for (name,) in names]
        return [row for row in rows if row is not None]

    def _require(self, channel: str, side: Side) -> ChannelRow:
        row = self.channel(channel)
        if row is None or row.side != side:
            raise LedgerError(f"channel {channel} is not a {side} channel of this book")
        return row

    def _add_owed(self, db: sqlite3.Connection, row: ChannelRow, grew: int, now: float) -> None:
        db.execute(
            "UPDATE pay_channels SET owed_nano = owed_nano + ?, updated_at = ? WHERE channel = ?",
            (grew, now, row.channel),
        )
        self._rows[row.channel] = row.owing(grew)

    def _previous(self, channel: str, request_id: str) -> tuple[int, int] | None:
        """(amount, receipt seq) of a request the channel owes already."""
        found = self._db.execute(
            "SELECT amount_nano, receipt_seq FROM pay_requests"
            " WHERE channel = ? AND request_id = ?",
            (channel, request_id),
        ).fetchone()
        return (int(found[0]), int(found[1])) if found is not None else None

    def mark_redeemed(self, channel: str, redeemed_nano: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE pay_channels SET redeemed_nano = MAX(redeemed_nano, ?), updated_at = ?"
                " WHERE channel = ?",
                (redeemed_nano, time.time(), channel),
            )
            self._rows.pop(channel, None)

    def totals(self) -> dict[str, int]:
        """Sums per side, for status pages."""
        out = {
            "paid_nano": 0,
            "deposits_paying_nano": 0,
            "owed_to_us_nano": 0,
            "vouchered_to_us_nano": 0,
            "redeemed_nano": 0,
        }
        for row in self.channels():
            if row.side == "payer":
                out["paid_nano"] += row.total_nano
                out["deposits_paying_nano"] += row.deposit_nano
            else:
                out["owed_to_us_nano"] += row.owed_nano
                out["vouchered_to_us_nano"] += row.total_nano
                out["redeemed_nano"] += row.redeemed_nano
        return out
