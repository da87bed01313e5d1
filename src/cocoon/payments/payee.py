"""The payee's end of payment channels (a proxy from its clients, a worker from its proxy).

It checks a payer's channel on chain when it connects, records what receipts
entitle it to, accepts vouchers (holding a run of them unchecked until a
decision needs one), refuses a payer whose unpaid credit is above the bound,
invoices what is left unpaid once a channel is quiet, and redeems on chain by
threshold and at exit. Every record is in the node's `PaymentBook` before
anything that depends on it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from ..wire.errors import WireError
from ..wire.messages import Invoice, PayChannel, PaymentState, VoucherMsg
from .book import ChannelRow, PaymentBook
from .channels import check_pay_channel, signed_voucher
from .errors import LedgerError, VoucherError, VoucherNotNewer, VoucherOverDeposit
from .link import ChainLink, ChainLinkError, ChannelView
from .money import record_chain_state
from .vouchers import SignedVoucher, check_newer

log = logging.getLogger(__name__)

# At stop: how long a payee waits for its payer to voucher what it owes (`collect`).
COLLECT_AT_STOP_S = 1.0


class PayeeSide:
    """Channels that pay this node."""

    def __init__(
        self,
        book: PaymentBook,
        link: ChainLink,
        *,
        network: str,
        max_credit_nano: int,
        redeem_threshold_nano: int,
    ) -> None:
        self.book = book
        self.link = link
        self.network = network
        self.max_credit_nano = max_credit_nano
        self.redeem_threshold_nano = redeem_threshold_nano
        self.redeems = 0
        # Per channel: the latest voucher taken but not yet checked and written.
        self._held: dict[str, tuple[SignedVoucher, str]] = {}
        # Set when a voucher is taken, for `collect`.
        self._arrived = asyncio.Event()
        # Per channel: when a receipt last added to what it owes (monotonic seconds).
        self._owed_at: dict[str, float] = {}

    async def bind(self, message: PayChannel, *, payer_node: str, payee_node: str) -> ChannelRow:
        """Check a payer's channel (proof, chain, terms) and take its latest voucher.

        Raises VoucherError (with the reason) if the channel cannot pay this node."""
        check_pay_channel(message, self.network, payer_node=payer_node, payee_node=payee_node)
        try:
            view = await self.link.lookup(message.channel, fresh=True)
        except ChainLinkError as exc:
            raise VoucherError(str(exc)) from exc
        if view is None:
            raise VoucherError(f"channel {message.channel} is not deployed")
        p = view.params
        if p.payee != self.link.wallet.address:
            raise VoucherError(f"channel {message.channel} pays another wallet")
        if p.payer_key != message.payer_key:
            raise VoucherError(f"channel {message.channel} has another payer key")
        if p.network_id != self.link.network_id:
            raise VoucherError(f"channel {message.channel} is for network {p.network_id}")
        if view.state.close_at:
            raise VoucherError(f"channel {message.channel} is closing")
        try:
            self.book.bind(
                view.address,
                side="payee",
                peer=payer_node,
                payer_key=p.payer_key,
                deposit_nano=view.state.deposit,
            )
        except LedgerError as exc:
            raise VoucherError(str(exc)) from exc
        record_chain_state(self.book, view)
        if message.latest is not None:
            with contextlib.suppress(VoucherNotNewer):
                await self.accept(message.latest)
            self.check_held(view.address)
        row = self.book.channel(view.address)
        assert row is not None
        return row

    async def accept(self, message: VoucherMsg) -> int:
        """Take a voucher; VoucherError if it is not acceptable; returns what it adds.

        Vouchers are cumulative, so checking the latest one proves every earlier
        one: a voucher whose fields follow the last one is held (in memory) and its
        signature is checked, and it is written to the book, only when a decision
        depends on it: the unpaid amount passing half the credit bound, a refusal,
        a redeem, the settle tick. A bad signature then cuts the payer off with at
        most half its credit unpaid; a payee that crashes loses only held vouchers,
        and the payer's next PayChannel carries its latest one again."""
        signed = signed_voucher(message, self.link.network_id)
        channel = message.channel
        row = self.book.channel(channel)
        if row is None or row.side != "payee":
            raise VoucherError(f"voucher for unknown channel {channel}")
        held = self._held.get(channel)
        seqno, total = (
            (held[0].voucher.seqno, held[0].voucher.total_nano)
            if held
            else (
                row.seqno,
                row.total_nano,
            )
        )
        try:
            check_newer(signed.voucher, seqno=seqno, redeemed=total, deposit=row.deposit_nano)
        except VoucherOverDeposit:
            # The payer may have topped up since we looked: ask the chain once.
            await self.refresh(channel)
            row = self.book.channel(channel)
            assert row is not None
            check_newer(signed.voucher, seqno=seqno, redeemed=total, deposit=row.deposit_nano)
        self._held[channel] = (signed, message.request_id)
        self._arrived.set()
        if row.owed_nano - row.total_nano > self.max_credit_nano // 2:
            self.check_held(channel)
        return signed.voucher.total_nano - total

    def check_held(self, channel: str) -> int:
        """Check the held voucher of `channel` and write it to the book; what it added
        (VoucherError, and the voucher dropped, if its signature is not the payer's)."""
        held = self._held.pop(channel, None)
        if held is None:
            return 0
        return self.book.accept(held[0], held[1])

    def check_all_held(self) -> None:
        for channel in list(self._held):
            try:
                self.check_held(channel)
            except VoucherError as exc:
                log.warning("voucher on channel %s refused: %s", channel, exc)

    async def refresh(self, channel: str) -> ChannelView | None:
        try:
            view = await self.link.lookup(channel, fresh=True)
        except ChainLinkError as exc:
            log.warning("cannot refresh channel %s: %s", channel, exc)
            return None
        if view is not None:
            record_chain_state(self.book, view)
        return view

    def state(self, channel: str) -> PaymentState:
        row = self.book.channel(channel)
        if row is None:
            return PaymentState(channel, 0, 0, 0, self.max_credit_nano)
        return PaymentState(
            channel, row.owed_nano, row.total_nano, row.deposit_nano, self.max_credit_nano
        )

    def refusal(self, channel: str | None) -> tuple[str, str] | None:
        """(code, message) if a new request on `channel` must be refused, else None."""
        if channel is None:
            return ("payment_required", "no payment channel is set up on this connection")
        row = self.book.channel(channel)
        if row is None:
            return ("payment_required", f"channel {channel} is not known")
        if row.unpaid_nano > self.max_credit_nano:
            return (
                "payment_required",
                f"{row.unpaid_nano} nanotons are unpaid, above the credit of"
                f" {self.max_credit_nano}; send a voucher",
            )
        if row.owed_nano >= row.deposit_nano:
            return ("insufficient_funds", f"the deposit of channel {channel} is used up; top it up")
        return None

    async def admit(self, channel: str | None) -> tuple[str, str] | None:
        """`refusal`, after asking the chain once if the deposit looks used up (the
        payer may have topped up since we looked)."""
        refusal = self.refusal(channel)
        if refusal is not None and channel is not None and channel in self._held:
            try:
                self.check_held(channel)
            except VoucherError as exc:
                return ("bad_payment", f"voucher refused: {exc}")
            refusal = self.refusal(channel)
        if refusal is not None and refusal[0] == "insufficient_funds" and channel is not None:
            await self.refresh(channel)
            refusal = self.refusal(channel)
        return refusal

    def owe(
        self, channel: str, request_id: str, amount_nano: int, seq: int, receipt: bytes | None
    ) -> int:
        self._owed_at[channel] = time.monotonic()
        return self.book.owe(channel, request_id, amount_nano, seq, receipt)

    def owe_new(self, items: Sequence[tuple[str, str, int, int, bytes | None]]) -> bool:
        """`owe` for many requests' first receipts at once (`PaymentBook.owe_new`);
        False, and nothing written, if any is not new: owe them one by one."""
        if not self.book.owe_new(items):
            return False
        self.owed({item[0] for item in items})
        return True

    def owed(self, channels: Iterable[str]) -> None:
        """These channels were owed more just now (by the book, or its journal): none is
        quiet enough to invoice again (`overdue`)."""
        now = time.monotonic()
        for channel in channels:
            self._owed_at[channel] = now

    def overdue(self, channel: str, age_s: float, now: float | None = None) -> list[Invoice]:
        """Invoices for what the payer has left unpaid for `age_s` seconds: receipts
        whose answer was cut while they were in flight (the stream was cancelled or
        broke), which no reconnect will show again.

        Only once the channel has been quiet for `age_s` (no receipt owed): while
        answers flow, what is unpaid is the payer's cadence, and a cumulative voucher
        cannot say which requests it covers, so invoicing then would send every
        receipt billed since the channel was last paid up, each tick (at c=64, a
        seventh of the proxy's CPU went to such invoices). A receipt the payer never
        saw keeps the unpaid amount above zero, within the credit bound, until the
        channel is quiet."""
        now = time.monotonic() if now is None else now
        if now - self._owed_at.get(channel, -float("inf")) < age_s:
            return []
        try:
            self.check_held(channel)
        except VoucherError:
            return []
        row = self.book.channel(channel)
        if row is None or row.unpaid_nano == 0:
            return []
        before = time.time() - age_s
        return [
            self.book.invoice(rid, receipt)
            for rid, receipt in self.book.unsettled(channel, before=before)
        ]

    async def collect(self, channel: str, ask: Callable[[PaymentState], None]) -> None:
        """Ask the payer for a voucher covering what it owes on `channel` (a PaymentState
        showing the unpaid credit) and wait until the channel is paid up: at stop, so
        that what the payer owes on its cadence is not left to its next connection.
        Callers bound the wait (the payer may be gone, or owe less than we think)."""
        asked = False
        while True:
            self._arrived.clear()
            try:
                self.check_held(channel)
            except VoucherError:
                return
            row = self.book.channel(channel)
            if row is None or row.unpaid_nano == 0:
                return
            if not asked:
                try:
                    ask(self.state(channel))
                except WireError:
                    return
                asked = True
            await self._arrived.wait()

    async def settle(self, *, final: bool = False) -> int:
        """Redeem every channel whose unredeemed vouchers reach the threshold (any amount
        when `final`); returns the nanotons paid out."""
        self.check_all_held()
        paid = 0
        for row in self.book.channels("payee"):
            due = row.unredeemed_nano
            if due <= 0 or (not final and due < self.redeem_threshold_nano):
                continue
            voucher = row.latest(self.link.network_id)
            if voucher is None:
                continue
            paid += await self._redeem(row, voucher)
        return paid

    async def _redeem(self, row: ChannelRow, voucher: SignedVoucher) -> int:
        view = await self.refresh(row.channel)
        if view is None or view.state.redeemed >= voucher.voucher.total_nano:
            return 0
        try:
            amount = await self.link.redeem(view, voucher)
        except ChainLinkError as exc:
            log.warning("redeem on %s failed: %s", row.channel, exc)
            return 0
        self.redeems += 1
        self.book.mark_redeemed(row.channel, voucher.voucher.total_nano)
        log.info(
            "redeemed %d nanotons on channel %s (voucher %d, total %d)",
            amount,
            row.channel,
            voucher.voucher.seqno,
            voucher.voucher.total_nano,
        )
        return amount
