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

A request's row is written first and read back only when one was there
already (a later receipt of a streamed answer): the statements of a request
are its inserts and its channel's update, the channel rows being kept in
memory (`store.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..wire.messages import Invoice
from .errors import LedgerError, VoucherError
from .new_rows import NewRows
from .rows import ChannelRow, Expected, Side, expected_row, read_expected
from .vouchers import SignedVoucher, Voucher, check_newer, sign_voucher, verify_voucher

__all__ = ["ChannelRow", "Expected", "PaymentBook", "Side", "pays_all"]


def pays_all(row: ChannelRow, signed: SignedVoucher) -> bool:
    """Whether a voucher pays everything its channel owes (so it settles every request
    owed before it; else it is put on the request it names)."""
    return signed.voucher.total_nano >= row.owed_nano


class PaymentBook(NewRows):
    """Channels, per-request amounts and vouchers of one node (SQLite, WAL)."""

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
        auth: bytes = b"",
    ) -> bool:
        """Remember a request before it is sent (a retry keeps the first record; a request
        `moved` to another payee, after its first one delivered nothing, replaces it);
        False if a record was there already and is kept. `auth`: the client's tag, kept
        to return with an invoice."""
        verb = "INSERT OR REPLACE" if moved else "INSERT OR IGNORE"
        with self.transaction() as db:
            cursor = db.execute(
                f"{verb} INTO pay_expected VALUES (?,?,?,?,?,?,?,?)",
                expected_row(
                    request_id,
                    channel,
                    request_hash=request_hash,
                    signers=signers,
                    max_coefficient_milli=max_coefficient_milli,
                    peer=peer,
                    auth=auth,
                ),
            )
        return cursor.rowcount == 1

    def expected(self, request_id: str) -> Expected | None:
        row = self._db.execute(
            "SELECT request_id, channel, request_hash, signers, max_coefficient_milli, peer,"
            " auth FROM pay_expected WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return None if row is None else read_expected(*row)

    def defer_new(self, items: Sequence[tuple[str, str, int, int]]) -> bool:
        """Payer: owe new requests' debts in memory, to write later (payments/lazy_debts.py):
        this book writes them at once (`incur_new`), so False."""
        return False

    async def expects_durable(self) -> None:
        """Return once the requests put on record so far are on disk (they leave after)."""
        await self.durable()

    def invoice(self, request_id: str, receipt: bytes) -> Invoice:
        """An invoice for a request's receipt, with what its payer said of the request
        when it sent it (a payer whose own record is lost checks its tag)."""
        expected = self.expected(request_id)
        if expected is None or not expected.auth:
            return Invoice(request_id, receipt)
        return Invoice(
            request_id,
            receipt,
            expected.auth,
            expected.max_coefficient_milli,
            list(expected.signers),
        )

    def incur(
        self,
        channel: str,
        request_id: str,
        amount_nano: int,
        receipt_seq: int,
        *,
        at: float | None = None,
    ) -> ChannelRow | None:
        """Owe `amount_nano` in all for a request (from a receipt with this sequence
        number); the channel as it stands after, or None (nothing written) if the receipt
        is older or adds nothing. LedgerError if the deposit cannot cover what is owed.
        `at`: when it was owed, where it was held in memory first (`folding.py`)."""
        if amount_nano < 0:
            raise LedgerError("a negative amount")
        with self.transaction() as db:
            # Stamped inside: a book holding rows in memory has written them first.
            now = self.now() if at is None else at
            row = self._require(channel, "payer")
            # settled_nano: the part of the request a voucher covers (set by `voucher`).
            if 0 < amount_nano <= row.deposit_nano - row.owed_nano and receipt_seq >= 0:
                cursor = db.execute(
                    "INSERT INTO pay_requests VALUES (?,?,?,0,?,NULL,?) ON CONFLICT DO NOTHING",
                    (channel, request_id, amount_nano, receipt_seq, now),
                )
                if cursor.rowcount == 1:  # the request's first receipt: all of it is new
                    self._add_owed(db, row, amount_nano, now)
                    return self._rows[channel]
            owed, seq = self._previous(channel, request_id) or (0, -1)
            if receipt_seq <= seq or amount_nano <= owed:
                return None  # an older receipt, or one that adds nothing
            grew = amount_nano - owed
            if row.owed_nano + grew > row.deposit_nano:
                raise LedgerError(
                    f"paying {grew} nanotons would exceed the deposit of"
                    f" channel {channel} ({row.deposit_nano}); top it up"
                )
            db.execute(
                "INSERT INTO pay_requests VALUES (?,?,?,0,?,NULL,?)"
                " ON CONFLICT (channel, request_id) DO UPDATE SET"
                " amount_nano = excluded.amount_nano, receipt_seq = excluded.receipt_seq,"
                " updated_at = excluded.updated_at",
                (channel, request_id, amount_nano, receipt_seq, now),
            )
            self._add_owed(db, row, grew, now)
        return self._rows[channel]

    def voucher(self, channel: str) -> SignedVoucher | None:
        """The next cumulative voucher, for everything the channel owes, stored (with the
        requests it covers marked paid) before it is returned; None if every amount owed
        is vouchered already."""
        if self.key is None:
            raise LedgerError("this book has no payer key")
        with self.transaction() as db:
            row = self._require(channel, "payer")
            if row.owed_nano <= row.total_nano:
                return None
            signed = sign_voucher(
                self.key, Voucher(channel, row.seqno + 1, row.owed_nano), self.network_id
            )
            # It covers all that is owed: every request row written so far is paid.
            now = self.now()
            db.execute(
                "UPDATE pay_channels SET seqno = ?, total_nano = ?, signature = ?,"
                " updated_at = ?, settled_at = ? WHERE channel = ?",
                (signed.voucher.seqno, row.owed_nano, signed.signature, now, now, channel),
            )
            self._rows[channel] = replace(
                row,
                seqno=signed.voucher.seqno,
                total_nano=row.owed_nano,
                signature=signed.signature,
                settled_at=now,
            )
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
        found = self._db.execute(
            "SELECT amount_nano, settled_nano, updated_at FROM pay_requests"
            " WHERE channel = ? AND request_id = ?",
            (channel, request_id),
        ).fetchone()
        if found is None:
            return 0
        row = self.channel(channel)
        settled = row is not None and float(found[2]) <= row.settled_at
        return int(found[0]) if settled else int(found[1])

    # -- payee ---------------------------------------------------------------

    def owe(
        self,
        channel: str,
        request_id: str,
        amount_nano: int,
        receipt_seq: int,
        receipt: bytes | None = None,
        *,
        at: float | None = None,
    ) -> int:
        """The payer owes `amount_nano` in all for a request (from a receipt with this
        sequence number); returns by how much the debt grew (0 for an older receipt).
        `receipt`: kept to invoice the request with; None where the book's `receipts`
        hold it already (the proxy's ledger: one copy of each receipt, not two; the
        row then keeps b''). `at` as for `incur`."""
        if amount_nano < 0:
            raise LedgerError("a negative amount")
        if receipt is None and self.receipts is not None:
            receipt = b""  # kept elsewhere: invoiced from there (and so in the index)
        with self.transaction() as db:
            # Stamped inside: a book holding rows in memory has written them first.
            now = self.now() if at is None else at
            row = self._require(channel, "payee")
            cursor = db.execute(
                "INSERT INTO pay_requests VALUES (?,?,?,0,?,?,?) ON CONFLICT DO NOTHING",
                (channel, request_id, amount_nano, receipt_seq, receipt, now),
            )
            if cursor.rowcount == 1:  # the request's first receipt: all of it is new
                grew = amount_nano
            else:
                prev = self._previous(channel, request_id)
                assert prev is not None
                if receipt_seq <= prev[1] or amount_nano < prev[0]:
                    return 0
                grew = amount_nano - prev[0]
                db.execute(
                    "UPDATE pay_requests SET amount_nano = ?, receipt_seq = ?, receipt = ?,"
                    " updated_at = ? WHERE channel = ? AND request_id = ?",
                    (amount_nano, receipt_seq, receipt, now, channel, request_id),
                )
            if grew:
                self._add_owed(db, row, grew, now)
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
        now = self.now()
        # Everything owed is paid: no request of the channel written so far is left to
        # invoice (else every settle tick would invoice again all it ever billed).
        # Sound because a payer never holds a receipt its payee has not recorded (a
        # worker records each before sending it; the proxy holds back those it has not
        # billed, `proxy/tab.py`): what the payer vouchered covers no request
        # that this book lacks. A time, not an update of each row: at c=64 those
        # updates were a tenth of what payments cost a worker.
        covers_all = pays_all(row, signed)
        settled_at = now if covers_all else row.settled_at
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE pay_channels SET seqno = ?, total_nano = ?, signature = ?,"
                " updated_at = ?, settled_at = ? WHERE channel = ? AND seqno = ?",
                (
                    signed.voucher.seqno,
                    signed.voucher.total_nano,
                    signed.signature,
                    now,
                    settled_at,
                    channel,
                    row.seqno,
                ),
            )
            if cursor.rowcount != 1:
                self._rows.pop(channel, None)
                raise VoucherError("a newer voucher was accepted meanwhile")
            self._rows[channel] = replace(
                row,
                seqno=signed.voucher.seqno,
                total_nano=signed.voucher.total_nano,
                signature=signed.signature,
                settled_at=settled_at,
            )
            if not covers_all and request_id:
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
        when given): what to invoice again, the newest `limit` of them, oldest first. A
        receipt lost in a crash is among the newest: older rows left unpaid (a payer that
        attributed its vouchers to other requests) must not hide it behind the limit.
        What a row keeps goes through the book's `receipts`, where it has one."""
        row = self.channel(channel)
        rows = self._db.execute(
            "SELECT request_id, receipt FROM (SELECT request_id, receipt, updated_at"
            " FROM pay_requests WHERE channel = ? AND updated_at > ? AND updated_at < ?"
            " AND settled_nano < amount_nano AND receipt IS NOT NULL"
            " ORDER BY updated_at DESC LIMIT ?) ORDER BY updated_at",
            (
                channel,
                row.settled_at if row is not None and row.settled_at else -float("inf"),
                float("inf") if before is None else before,
                limit,
            ),
        ).fetchall()
        found = []
        for request_id, kept in rows:
            receipt = bytes(kept) if self.receipts is None else self.receipts(request_id, kept)
            if receipt:
                found.append((str(request_id), receipt))
        return found

    def settle_all(self, channel: str) -> None:
        """Mark every request of the channel written so far as paid (its vouchers cover
        all it owes)."""
        with self.transaction() as db:
            row = self.channel(channel)
            if row is None:
                raise LedgerError(f"channel {channel} is not in this book")
            now = self.now()
            db.execute("UPDATE pay_channels SET settled_at = ? WHERE channel = ?", (now, channel))
            self._rows[channel] = replace(row, settled_at=now)
