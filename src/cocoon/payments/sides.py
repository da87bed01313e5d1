"""The two ends of a payment channel, as the nodes run them.

`PayerSide` (a client towards its proxy, a proxy towards its workers) opens
and funds its channels, records what each accepted receipt proves is owed,
pays it with the next cumulative voucher on a cadence (one voucher for many
answers) and tops channels up when they run low. `PayeeSide` (a proxy from
its clients, a worker from its proxy) checks a payer's channel on chain when
it connects, records what receipts entitle it to, accepts vouchers, refuses a
payer whose unpaid credit is above the bound, and redeems on chain by
threshold and at exit. Both write to the node's `PaymentBook` before anything
leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..crypto.receipts import Receipt
from ..pricing import Prices, price_nano
from ..wire.errors import WireError
from ..wire.messages import Invoice, PayChannel, PaymentState, VoucherMsg
from .book import ChannelRow, PaymentBook
from .channels import check_pay_channel, pay_channel_message, signed_voucher, voucher_message
from .errors import LedgerError, VoucherError, VoucherNotNewer, VoucherOverDeposit
from .link import ChainLink, ChainLinkError, ChannelView
from .vouchers import SignedVoucher, check_newer

log = logging.getLogger(__name__)

BP = 10_000

# At stop: how long a payee waits for its payer to voucher what it owes (`collect`).
COLLECT_AT_STOP_S = 1.0

# Sends a voucher on the connection to the channel's payee (WireError if it is closed).
Send = Callable[[VoucherMsg], None]


def receipt_price(prices: Prices, receipt: Receipt) -> int:
    """What a receipt proves is owed, at the worker's coefficient it states."""
    return price_nano(
        prices,
        prompt_tokens=receipt.prompt_tokens,
        cached_prompt_tokens=receipt.cached_prompt_tokens,
        completion_tokens=receipt.completion_tokens,
        reasoning_tokens=receipt.reasoning_tokens,
        coefficient_milli=receipt.coefficient_milli,
    )


def worker_share(amount_nano: int, commission_bp: int) -> int:
    """What the worker gets of a price: the proxy keeps its commission (rounded down)."""
    return amount_nano - amount_nano * commission_bp // BP


def _record(book: PaymentBook, view: ChannelView) -> None:
    """What the chain says of a channel: its deposit and redeemed total."""
    book.set_chain_state(
        view.address, deposit_nano=view.state.deposit, redeemed_nano=view.state.redeemed
    )


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
        _record(self.book, view)
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
            _record(self.book, view)
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

    def owe(self, channel: str, request_id: str, amount_nano: int, seq: int, receipt: bytes) -> int:
        self._owed_at[channel] = time.monotonic()
        return self.book.owe(channel, request_id, amount_nano, seq, receipt)

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
            Invoice(rid, receipt) for rid, receipt in self.book.unsettled(channel, before=before)
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


@dataclass(frozen=True)
class Owed:
    """What recording a receipt leaves the payer to do."""

    voucher: VoucherMsg | None  # due now: send it (it is stored already)
    low: bool  # less than `top_up_below_nano` of the deposit is left unowed


class PayerSide:
    """Channels this node pays into.

    Each accepted receipt is recorded at once (`owe`: what the request costs in all,
    on disk before the answer goes on), but vouchers are cumulative, so one voucher
    pays for every answer since the last one. The next voucher is signed and sent
    when it is due: once what is owed and not vouchered reaches half the credit the
    payee allows (its `PaymentTerms` / `PaymentState`), so the payee's bound is never
    reached by waiting; at most `voucher_interval_s` after an amount became owed (one
    timer for all channels, armed when something becomes owed); when the payee asks
    (`flush`: an invoice, a `PaymentState` showing unpaid credit); at stop
    (`stop`); and at each connection, whose `PayChannel` carries a voucher for
    everything owed (`announce`). An interval of 0 vouchers every answer.
    """

    def __init__(
        self,
        book: PaymentBook,
        link: ChainLink,
        *,
        network: str,
        close_delay: int,
        deposit_nano: int,
        top_up_below_nano: int,
        voucher_interval_s: float = 0.0,
    ) -> None:
        if voucher_interval_s < 0:
            raise ValueError(f"voucher interval {voucher_interval_s} s is negative")
        self.book = book
        self.link = link
        self.network = network
        self.close_delay = close_delay
        self.deposit_nano = deposit_nano
        self.top_up_below_nano = top_up_below_nano
        self.voucher_interval_s = voucher_interval_s
        self.top_ups = 0
        self.vouchers = 0  # signed by this process, for status pages and tests
        # Per channel: the credit its payee allows (unknown: voucher every answer).
        self._credit: dict[str, int] = {}
        # Per channel: where its vouchers go, once its PayChannel went on a connection.
        self._senders: dict[str, Send] = {}
        # Channels with amounts owed since their last voucher, and the timer paying them.
        self._owing: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    async def open(
        self, payee_wallet: str, peer: str, *, deposit_nano: int | None = None
    ) -> ChannelRow:
        """The channel to `payee_wallet`, deployed and funded (with `deposit_nano`, by
        default this side's) if it is not yet."""
        deposit = self.deposit_nano if deposit_nano is None else deposit_nano
        view = await self.link.open_channel(payee_wallet, self.close_delay, deposit)
        self.book.bind(
            view.address,
            side="payer",
            peer=peer,
            payer_key=self.link.public_key,
            deposit_nano=view.state.deposit,
        )
        _record(self.book, view)
        row = self.book.channel(view.address)
        assert row is not None
        return row

    def announce(self, channel: str, *, payer_node: str, payee_node: str) -> PayChannel:
        """The PayChannel opening a connection, with a voucher for everything owed: what
        was owed but not vouchered, or vouchered and lost, when the last connection or
        this process ended, is paid now."""
        self._sign(channel)
        self.book.commit()  # the voucher it carries is on disk before it leaves
        row = self.book.channel(channel)
        latest = row.latest(self.link.network_id) if row is not None else None
        return pay_channel_message(
            self.link.key,
            self.network,
            channel,
            payer_node=payer_node,
            payee_node=payee_node,
            latest=latest,
        )

    def attach(self, channel: str, send: Send, *, max_credit_nano: int | None = None) -> None:
        """Send `channel`'s vouchers with `send` from now on (its PayChannel went first on
        that connection); `max_credit_nano`: the payee's credit bound, if known."""
        self._senders[channel] = send
        if max_credit_nano is not None:
            self._credit[channel] = max_credit_nano
        if channel in self._owing:
            self.flush(channel)  # owed while no connection could take a voucher

    def detach(self, channel: str, send: Send) -> None:
        """The connection behind `send` is gone: hold vouchers until the next one."""
        if self._senders.get(channel) == send:
            del self._senders[channel]

    def learn_credit(self, channel: str, max_credit_nano: int) -> None:
        """The payee's credit bound, as its PaymentTerms or PaymentState state it."""
        self._credit[channel] = max_credit_nano

    def heard(self, state: PaymentState) -> None:
        """The payee's view of a channel: learn its credit bound, and pay now, not on the
        cadence, if it shows unpaid credit (it is stopping, or it just took the channel)."""
        self.learn_credit(state.channel, state.max_credit_nano)
        if state.owed_nano > state.paid_nano:
            self.flush(state.channel)

    def owe(self, channel: str, request_id: str, amount_nano: int, seq: int) -> Owed | None:
        """Record that a request costs `amount_nano` in all (from a receipt with sequence
        number `seq`; on disk before this returns). None: the receipt adds nothing.
        LedgerError (nothing written) if the deposit cannot cover it: top up first.

        A voucher due now is signed in the same transaction (the caller's, if it has
        one) and returned; the caller sends it with `send` once that is committed, so
        nothing leaves before it is on disk."""
        with self.book.transaction():
            row = self.book.incur(channel, request_id, amount_nano, seq)
            if row is None:
                return None
            low = self._low(row)
            credit = self._credit.get(channel)
            if self.voucher_interval_s == 0 or credit is None or 2 * row.unpaid_nano >= credit:
                return Owed(self._sign(channel, request_id), low)
        self._owing.add(channel)
        if self._timer is None and not self._stopped:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.voucher_interval_s, self._on_timer)
        return Owed(None, low)

    def send(self, channel: str, message: VoucherMsg) -> bool:
        """Send a voucher of `channel` on its connection, once it is on disk (vouchers are
        rare: this commits the loop's open writes now); whether it went. One that cannot
        go now is not lost: the next connection's PayChannel carries the latest voucher."""
        send = self._senders.get(channel)
        if send is None:
            return False
        if not self.book.commit():
            # Inside a write: the voucher leaves once that write's turn is committed.
            self.book.commits.then(lambda: self._send_quietly(send, message))
            return True
        return self._send_quietly(send, message)

    @staticmethod
    def _send_quietly(send: Send, message: VoucherMsg) -> bool:
        try:
            send(message)
        except WireError:
            return False
        return True

    def flush(self, channel: str) -> bool:
        """Voucher and send what `channel` owes now (the payee asks, or it is time), if
        a connection takes its vouchers; whether a voucher went."""
        if channel not in self._senders:
            return False  # kept owing: `attach` pays it after the next PayChannel
        message = self._sign(channel)
        return message is not None and self.send(channel, message)

    def stop(self) -> int:
        """At stop: voucher and send what every connected channel owes (how many went),
        and arm no timer from now on: what is owed later (answers still in flight) is
        on disk, and the next start's PayChannel pays it."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return sum(self.flush(channel) for channel in list(self._senders))

    def _on_timer(self) -> None:
        self._timer = None
        for channel in list(self._owing):
            self.flush(channel)

    def _sign(self, channel: str, request_id: str = "") -> VoucherMsg | None:
        """The next voucher of `channel`, for all it owes (stored), if it owes more than
        it vouchered."""
        signed = self.book.voucher(channel)
        self._owing.discard(channel)
        if signed is None:
            return None
        self.vouchers += 1
        return voucher_message(signed, request_id)

    def low(self, channel: str) -> bool:
        row = self.book.channel(channel)
        return row is not None and self._low(row)

    def _low(self, row: ChannelRow) -> bool:
        """Less than `top_up_below_nano` of the deposit is left unowed."""
        return row.uncommitted_nano < self.top_up_below_nano

    async def top_up_if_low(self, channel: str) -> bool:
        if not self.low(channel):
            return False
        view = await self.link.lookup(channel, fresh=True)
        if view is None:
            return False
        await self._top_up(view, self.deposit_nano)
        return True

    async def top_up(self, channel: str, amount_nano: int) -> bool:
        """Add `amount_nano` to a channel's deposit; False if the chain does not know it."""
        view = await self.link.lookup(channel, fresh=True)
        if view is None:
            return False
        await self._top_up(view, amount_nano)
        return True

    async def _top_up(self, view: ChannelView, amount_nano: int) -> None:
        view = await self.link.top_up(view, amount_nano)
        self.top_ups += 1
        _record(self.book, view)
        log.info("topped up channel %s by %d nanotons", view.address, amount_nano)


def payments_snapshot(book: PaymentBook, link: ChainLink) -> dict[str, object]:
    """Balances for /jsonstats and status pages: per channel and in all, in nanotons."""
    channels = [
        {
            "channel": row.channel,
            "side": row.side,
            "peer": row.peer,
            "deposit_nano": row.deposit_nano,
            "vouchered_nano": row.total_nano,
            "voucher_seqno": row.seqno,
            # Payer: what it owes, and what of it is not vouchered yet (the cadence's).
            "owed_nano": row.owed_nano,
            "unpaid_nano": row.unpaid_nano,
            "redeemed_nano": row.redeemed_nano,
            "unredeemed_nano": row.unredeemed_nano,
        }
        for row in book.channels()
    ]
    return {
        "wallet": link.address,
        "chain_endpoint": link.client.endpoint,
        "root": link.root_address,
        "network_id": link.network_id,
        "totals": book.totals(),
        "channels": channels,
    }
