"""A node's payment-channel book in SQLite: what it owes, what it is owed, and the vouchers.

One book serves every role. A node is the *payer* of channels it funds (a
client to its proxy, a proxy to its workers) and the *payee* of channels that
pay it (a proxy from its clients, a worker from its proxy).

- Payer side: `expect` records a request before it leaves (so a receipt for
  it can be recognised even after a crash); `incur` records what an accepted
  receipt's price adds to what the channel owes (`owed_nano`); `voucher` signs
  the next cumulative voucher for everything owed, stores it and marks the
  requests it covers paid; `pay` is both in one transaction. Nothing is sent
  before it is on disk, and what is owed but not vouchered survives a crash
  (the next `PayChannel` carries a voucher for it).
- Payee side: `owe` records what a receipt entitles it to; `accept` checks a
  voucher (signature, network, channel, newer, within the deposit) and stores
  it as the latest. `unpaid` is owed minus vouchered: the credit in flight.

Every method that changes money is one atomic write (WAL), so kill -9 at any
moment leaves the book before or after the change, never between; the writes
of one turn of the event loop share a transaction (`commits.py`), and what
depends on a write is sent once `durable()` returns. The cumulative voucher
makes a lost or repeated message harmless.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .commits import GroupCommit
from .errors import LedgerError, VoucherError
from .vouchers import (
    MAX_TOTAL,
    SignedVoucher,
    Voucher,
    check_newer,
    sign_voucher,
    verify_voucher,
)

Side = Literal["payer", "payee"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pay_channels (
    channel TEXT PRIMARY KEY,
    side TEXT NOT NULL CHECK (side IN ('payer', 'payee')),
    peer TEXT NOT NULL,
    payer_key BLOB NOT NULL,
    deposit_nano INTEGER NOT NULL CHECK (deposit_nano >= 0),
    seqno INTEGER NOT NULL,
    total_nano INTEGER NOT NULL CHECK (total_nano >= 0),
    signature BLOB,
    redeemed_nano INTEGER NOT NULL DEFAULT 0,
    owed_nano INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pay_requests (
    channel TEXT NOT NULL,
    request_id TEXT NOT NULL,
    amount_nano INTEGER NOT NULL CHECK (amount_nano >= 0),
    settled_nano INTEGER NOT NULL CHECK (settled_nano >= 0),
    receipt_seq INTEGER NOT NULL,
    receipt BLOB,
    updated_at REAL NOT NULL,
    PRIMARY KEY (channel, request_id)
);
CREATE INDEX IF NOT EXISTS pay_requests_unsettled
    ON pay_requests (channel) WHERE settled_nano < amount_nano;
CREATE TABLE IF NOT EXISTS pay_expected (
    request_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    signers BLOB NOT NULL,
    max_coefficient_milli INTEGER NOT NULL,
    peer TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
"""
# Books written before payers recorded `owed_nano` vouchered every answer at once:
# what they owed is what they vouchered. A no-op for newer books (a payer never
# vouchers more than it owes).
_MIGRATE_PAYER_OWED = (
    "UPDATE pay_channels SET owed_nano = total_nano WHERE side = 'payer' AND owed_nano < total_nano"
)


@dataclass(frozen=True)
class ChannelRow:
    """One channel as the book has it."""

    channel: str
    side: Side
    peer: str
    payer_key: bytes
    deposit_nano: int
    seqno: int
    total_nano: int  # latest voucher: signed (payer) or accepted (payee)
    signature: bytes | None
    redeemed_nano: int
    owed_nano: int  # sum of what receipts prove is owed (to the payee, by the payer)

    @property
    def unpaid_nano(self) -> int:
        """Owed but not yet covered by a voucher: the payee's credit in flight, or what
        the payer has still to voucher."""
        return max(0, self.owed_nano - self.total_nano)

    @property
    def unredeemed_nano(self) -> int:
        """Vouchered but not yet redeemed on chain."""
        return self.total_nano - self.redeemed_nano

    @property
    def remaining_nano(self) -> int:
        """Deposit not yet promised by a voucher."""
        return self.deposit_nano - self.total_nano

    @property
    def uncommitted_nano(self) -> int:
        """Payer: deposit not yet owed (what is owed will be vouchered)."""
        return self.deposit_nano - max(self.owed_nano, self.total_nano)

    def latest(self, network: int) -> SignedVoucher | None:
        if self.signature is None:
            return None
        return SignedVoucher(
            Voucher(self.channel, self.seqno, self.total_nano), network, self.signature
        )


@dataclass(frozen=True)
class Expected:
    """A request a payer sent, kept so a receipt for it can be checked later."""

    request_id: str
    channel: str
    request_hash: bytes
    signers: tuple[bytes, ...]  # public keys allowed to sign its receipt
    max_coefficient_milli: int
    peer: str


class PaymentBook:
    """Channels, per-request amounts and vouchers of one node (SQLite, WAL)."""

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        network_id: int,
        key: Ed25519PrivateKey | None = None,
        commits: GroupCommit | None = None,
    ) -> None:
        if isinstance(db, sqlite3.Connection):
            self._db = db
            self._owned = False
        else:
            self._db = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._owned = True
        if not -(2**31) <= network_id < 2**31:
            raise LedgerError(f"network id {network_id} is not an int32")
        self._db.executescript(_SCHEMA)
        self._db.execute(_MIGRATE_PAYER_OWED)
        self.network_id = network_id
        self.key = key
        # Shared with the proxy's ledger, which writes in the same transactions.
        self.commits = commits or GroupCommit(self._db)

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One atomic write (nests: only the outermost is one), committed with the others
        of this turn of the event loop (`commits.py`): await `durable()` before sending
        what depends on it."""
        return self.commits.write()

    async def durable(self) -> None:
        """Return once everything written so far is on disk."""
        await self.commits.durable()

    def commit(self) -> bool:
        """Commit what is written now (for a rare message that must leave at once)."""
        return self.commits.commit()

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
            bound = self.channel(channel)
        assert bound is not None
        return bound

    def set_chain_state(self, channel: str, *, deposit_nano: int, redeemed_nano: int) -> None:
        """What the chain says: deposit and redeemed total (never lowers what is known)."""
        self._db.execute(
            "UPDATE pay_channels SET deposit_nano = MAX(deposit_nano, ?),"
            " redeemed_nano = MAX(redeemed_nano, ?), updated_at = ? WHERE channel = ?",
            (deposit_nano, redeemed_nano, time.time(), channel),
        )

    def channel(self, channel: str) -> ChannelRow | None:
        row = self._db.execute(
            "SELECT channel, side, peer, payer_key, deposit_nano, seqno, total_nano, signature,"
            " redeemed_nano, owed_nano FROM pay_channels WHERE channel = ?",
            (channel,),
        ).fetchone()
        return ChannelRow(*row) if row is not None else None

    def channels(self, side: Side | None = None) -> list[ChannelRow]:
        query = (
            "SELECT channel, side, peer, payer_key, deposit_nano, seqno, total_nano, signature,"
            " redeemed_nano, owed_nano FROM pay_channels"
        )
        rows = (
            self._db.execute(query + " WHERE side = ? ORDER BY channel", (side,))
            if side
            else self._db.execute(query + " ORDER BY channel")
        ).fetchall()
        return [ChannelRow(*r) for r in rows]

    def _require(self, channel: str, side: Side) -> ChannelRow:
        row = self.channel(channel)
        if row is None or row.side != side:
            raise LedgerError(f"channel {channel} is not a {side} channel of this book")
        return row

    # -- payer ---------------------------------------------------------------

    def expect(
        self,
        request_id: str,
        channel: str,
        *,
        request_hash: bytes,
        signers: list[bytes],
        max_coefficient_milli: int,
        peer: str = "",
        moved: bool = False,
    ) -> None:
        """Remember a request before it is sent (a retry keeps the first record; a request
        `moved` to another payee, after its first one delivered nothing, replaces it)."""
        verb = "INSERT OR REPLACE" if moved else "INSERT OR IGNORE"
        with self.transaction() as db:
            db.execute(
                f"{verb} INTO pay_expected VALUES (?,?,?,?,?,?,?)",
                (
                    request_id,
                    channel,
                    request_hash,
                    b"".join(signers),
                    max_coefficient_milli,
                    peer,
                    time.time(),
                ),
            )

    def expected(self, request_id: str) -> Expected | None:
        row = self._db.execute(
            "SELECT request_id, channel, request_hash, signers, max_coefficient_milli, peer"
            " FROM pay_expected WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        if row is None:
            return None
        signers = bytes(row[3])
        keys = tuple(signers[i : i + 32] for i in range(0, len(signers), 32))
        return Expected(row[0], row[1], bytes(row[2]), keys, row[4], row[5])

    def incur(
        self, channel: str, request_id: str, amount_nano: int, receipt_seq: int
    ) -> ChannelRow | None:
        """Owe `amount_nano` in all for a request (from a receipt with this sequence
        number); the channel as it stands after, or None (nothing written) if the receipt
        is older or adds nothing. LedgerError if the deposit cannot cover what is owed."""
        if amount_nano < 0:
            raise LedgerError("a negative amount")
        now = time.time()
        with self.transaction() as db:
            row = self._require(channel, "payer")
            prev = db.execute(
                "SELECT amount_nano, receipt_seq FROM pay_requests"
                " WHERE channel = ? AND request_id = ?",
                (channel, request_id),
            ).fetchone()
            owed, seq = (prev[0], prev[1]) if prev is not None else (0, -1)
            if receipt_seq <= seq or amount_nano <= owed:
                return None  # an older receipt, or one that adds nothing
            grew = amount_nano - owed
            if row.owed_nano + grew > row.deposit_nano:
                raise LedgerError(
                    f"paying {grew} nanotons would exceed the deposit of"
                    f" channel {channel} ({row.deposit_nano}); top it up"
                )
            # settled_nano: the part of the request a voucher covers (set by `voucher`).
            db.execute(
                "INSERT INTO pay_requests VALUES (?,?,?,0,?,NULL,?)"
                " ON CONFLICT (channel, request_id) DO UPDATE SET"
                " amount_nano = excluded.amount_nano, receipt_seq = excluded.receipt_seq,"
                " updated_at = excluded.updated_at",
                (channel, request_id, amount_nano, receipt_seq, now),
            )
            db.execute(
                "UPDATE pay_channels SET owed_nano = owed_nano + ?, updated_at = ?"
                " WHERE channel = ?",
                (grew, now, channel),
            )
        return replace(row, owed_nano=row.owed_nano + grew)

    def voucher(self, channel: str) -> SignedVoucher | None:
        """The next cumulative voucher, for everything the channel owes, stored (with the
        requests it covers marked paid) before it is returned; None if every amount owed
        is vouchered already."""
        if self.key is None:
            raise LedgerError("this book has no payer key")
        now = time.time()
        with self.transaction() as db:
            row = self._require(channel, "payer")
            if row.owed_nano <= row.total_nano:
                return None
            signed = sign_voucher(
                self.key, Voucher(channel, row.seqno + 1, row.owed_nano), self.network_id
            )
            db.execute(
                "UPDATE pay_channels SET seqno = ?, total_nano = ?, signature = ?, updated_at = ?"
                " WHERE channel = ?",
                (signed.voucher.seqno, row.owed_nano, signed.signature, now, channel),
            )
            # The partial index holds exactly the requests owed since the last voucher.
            self._settle_all(db, channel)
        return signed

    def pay(
        self, channel: str, request_id: str, amount_nano: int, receipt_seq: int
    ) -> SignedVoucher | None:
        """`incur` and `voucher` in one transaction: the voucher that pays the increase,
        already stored, or None if nothing new is owed."""
        if self.key is None:
            raise LedgerError("this book has no payer key")
        with self.transaction():
            if self.incur(channel, request_id, amount_nano, receipt_seq) is None:
                return None
            return self.voucher(channel)

    def paid_for(self, channel: str, request_id: str) -> int:
        """Payer: how much of a request the vouchers signed so far cover."""
        row = self._db.execute(
            "SELECT settled_nano FROM pay_requests WHERE channel = ? AND request_id = ?",
            (channel, request_id),
        ).fetchone()
        return int(row[0]) if row is not None else 0

    # -- payee ---------------------------------------------------------------

    def owe(
        self,
        channel: str,
        request_id: str,
        amount_nano: int,
        receipt_seq: int,
        receipt: bytes | None = None,
    ) -> int:
        """The payer owes `amount_nano` in all for a request (from a receipt with this
        sequence number); returns by how much the debt grew (0 for an older receipt)."""
        if amount_nano < 0:
            raise LedgerError("a negative amount")
        now = time.time()
        with self.transaction() as db:
            self._require(channel, "payee")
            prev = db.execute(
                "SELECT amount_nano, receipt_seq FROM pay_requests"
                " WHERE channel = ? AND request_id = ?",
                (channel, request_id),
            ).fetchone()
            if prev is not None and (receipt_seq <= prev[1] or amount_nano < prev[0]):
                return 0
            grew = amount_nano - (prev[0] if prev is not None else 0)
            db.execute(
                "INSERT INTO pay_requests VALUES (?,?,?,0,?,?,?)"
                " ON CONFLICT (channel, request_id) DO UPDATE SET"
                " amount_nano = excluded.amount_nano, receipt_seq = excluded.receipt_seq,"
                " receipt = excluded.receipt,"
                " updated_at = excluded.updated_at",
                (channel, request_id, amount_nano, receipt_seq, receipt, now),
            )
            db.execute(
                "UPDATE pay_channels SET owed_nano = owed_nano + ?, updated_at = ?"
                " WHERE channel = ?",
                (grew, now, channel),
            )
        return grew

    def accept(self, signed: SignedVoucher, request_id: str = "") -> int:
        """Check and store a voucher; returns how much it added. Raises VoucherError
        (nothing is written) for a bad signature, another network or channel, an
        old voucher, or one above the deposit."""
        channel = signed.voucher.channel
        row = self.channel(channel)
        if row is None or row.side != "payee":
            raise VoucherError(f"voucher for unknown channel {channel}")
        verify_voucher(signed, row.payer_key, network=self.network_id, channel=channel)
        check_newer(
            signed.voucher, seqno=row.seqno, redeemed=row.total_nano, deposit=row.deposit_nano
        )
        added = signed.voucher.total_nano - row.total_nano
        now = time.time()
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE pay_channels SET seqno = ?, total_nano = ?, signature = ?, updated_at = ?"
                " WHERE channel = ? AND seqno = ?",
                (
                    signed.voucher.seqno,
                    signed.voucher.total_nano,
                    signed.signature,
                    now,
                    channel,
                    row.seqno,
                ),
            )
            if cursor.rowcount != 1:
                raise VoucherError("a newer voucher was accepted meanwhile")
            if signed.voucher.total_nano >= row.owed_nano:
                # Everything owed is paid: no request of the channel is left to invoice
                # (else every settle tick would invoice again all it ever billed).
                self._settle_all(db, channel)
            elif request_id:
                # Attribute the payment to the request it says it is for (bookkeeping
                # only: which requests to invoice again after a crash).
                db.execute(
                    "UPDATE pay_requests SET settled_nano = MIN(amount_nano, settled_nano + ?)"
                    " WHERE channel = ? AND request_id = ?",
                    (added, channel, request_id),
                )
        return added

    def unsettled(
        self, channel: str, limit: int = 1000, *, before: float | None = None
    ) -> list[tuple[str, bytes]]:
        """(request id, receipt) of requests not fully paid (last changed before `before`,
        when given): what to invoice again."""
        rows = self._db.execute(
            "SELECT request_id, receipt FROM pay_requests"
            " WHERE channel = ? AND settled_nano < amount_nano AND receipt IS NOT NULL"
            " AND updated_at < ? ORDER BY updated_at LIMIT ?",
            (channel, float("inf") if before is None else before, limit),
        ).fetchall()
        return [(str(r[0]), bytes(r[1])) for r in rows]

    def settle_all(self, channel: str) -> None:
        """Mark every request of the channel as paid (its vouchers cover all it owes)."""
        self._settle_all(self._db, channel)

    @staticmethod
    def _settle_all(db: sqlite3.Connection, channel: str) -> None:
        # Only the rows in the partial index (not yet paid) are touched.
        db.execute(
            "UPDATE pay_requests SET settled_nano = amount_nano"
            " WHERE channel = ? AND settled_nano < amount_nano",
            (channel,),
        )

    def mark_redeemed(self, channel: str, redeemed_nano: int) -> None:
        self._db.execute(
            "UPDATE pay_channels SET redeemed_nano = MAX(redeemed_nano, ?), updated_at = ?"
            " WHERE channel = ?",
            (redeemed_nano, time.time(), channel),
        )

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
