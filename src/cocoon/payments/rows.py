"""The payment book's tables, and its rows as typed values.

`pay_channels` holds one row per channel (its terms, the latest voucher, what
is owed and redeemed, when a voucher last covered all of it), `pay_requests`
what each request of a channel costs (with the receipt a payee invoices from),
`pay_expected` what a payer sent (so a receipt for it can be checked after a
crash).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .vouchers import SignedVoucher, Voucher

Side = Literal["payer", "payee"]

SCHEMA = """
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
    updated_at REAL NOT NULL,
    settled_at REAL NOT NULL DEFAULT 0
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
-- What to invoice is found by time (`settled_at` of the channel); the index of
-- unsettled rows it replaces cost every voucher an update of each row it paid.
-- Only a payee invoices, and a payee's rows have a receipt (or b'' where another
-- table keeps it): a payer's rows stay out of the index, one b-tree fewer for each
-- request a client or a proxy pays for (the index of every row it replaces).
DROP INDEX IF EXISTS pay_requests_unsettled;
DROP INDEX IF EXISTS pay_requests_recent;
CREATE INDEX IF NOT EXISTS pay_requests_invoiceable ON pay_requests (channel, updated_at)
    WHERE receipt IS NOT NULL;
CREATE TABLE IF NOT EXISTS pay_expected (
    request_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    signers BLOB NOT NULL,
    max_coefficient_milli INTEGER NOT NULL,
    peer TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    auth BLOB NOT NULL DEFAULT x''
);
"""
# Books written before payers recorded `owed_nano` vouchered every answer at once:
# what they owed is what they vouchered. Run once, on a book older than
# `BOOK_VERSION`: since, a payer may voucher what it holds in memory before its rows
# hold it (folding.py), and a crash then leaves the rows owing less than the voucher
# until the journal is folded in at the next open.
MIGRATE_PAYER_OWED = (
    "UPDATE pay_channels SET owed_nano = total_nano WHERE side = 'payer' AND owed_nano < total_nano"
)
# The book's `user_version`: 1 once `MIGRATE_PAYER_OWED` has run.
BOOK_VERSION = 1

CHANNEL_COLUMNS = (
    "channel, side, peer, payer_key, deposit_nano, seqno, total_nano, signature,"
    " redeemed_nano, owed_nano, settled_at"
)


def add_columns(db: sqlite3.Connection) -> None:
    """Give a book made before them the newer columns: `settled_at` (0: nothing settled
    in bulk yet; the rows it settled one by one say so themselves) and the requests'
    `auth` (none: those clients kept their own records)."""
    for table, column, kind in (
        ("pay_channels", "settled_at", "REAL NOT NULL DEFAULT 0"),
        ("pay_expected", "auth", "BLOB NOT NULL DEFAULT x''"),
    ):
        columns = {str(c[1]) for c in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@dataclass(frozen=True, slots=True)
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
    # When a voucher last covered all that was owed: every request row written before
    # is paid (rows are stamped with the book's clock, which never runs back).
    settled_at: float = 0.0

    def owing(self, more_nano: int) -> ChannelRow:
        """This row once `more_nano` more is owed (what every receipt does: built
        directly, as `dataclasses.replace` took a few µs of each request)."""
        return ChannelRow(
            self.channel,
            self.side,
            self.peer,
            self.payer_key,
            self.deposit_nano,
            self.seqno,
            self.total_nano,
            self.signature,
            self.redeemed_nano,
            self.owed_nano + more_nano,
            self.settled_at,
        )

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


@dataclass(frozen=True, slots=True)
class Expected:
    """A request a payer sent, kept so a receipt for it can be checked later."""

    request_id: str
    channel: str
    request_hash: bytes
    signers: tuple[bytes, ...]  # public keys allowed to sign its receipt
    max_coefficient_milli: int
    peer: str
    auth: bytes = b""  # the client's tag (payments/request_auth.py), kept by a payee


# A `pay_expected` row: request id, channel, envelope hash, the workers' keys joined,
# price bound, peer, time, the client's tag.
ExpectedRow = tuple[str, str, bytes, bytes, int, str, float, bytes]


def expected_row(
    request_id: str,
    channel: str,
    *,
    request_hash: bytes,
    signers: Sequence[bytes],
    max_coefficient_milli: int,
    peer: str = "",
    auth: bytes = b"",
) -> ExpectedRow:
    """The row recording a request as sent (read back as an `Expected`)."""
    return (
        request_id,
        channel,
        request_hash,
        b"".join(signers),
        max_coefficient_milli,
        peer,
        time.time(),
        auth,
    )


def read_expected(
    request_id: str,
    channel: str,
    request_hash: bytes,
    signers: bytes,
    max_coefficient_milli: int,
    peer: str,
    auth: bytes,
) -> Expected:
    """An `Expected` from the columns of its row (the workers' keys joined)."""
    joined = bytes(signers)
    keys = tuple(joined[i : i + 32] for i in range(0, len(joined), 32))
    return Expected(
        request_id, channel, bytes(request_hash), keys, max_coefficient_milli, peer, bytes(auth)
    )
