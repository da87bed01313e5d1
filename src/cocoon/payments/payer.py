"""The payer's end of payment channels (a client towards its proxy, a proxy to its workers).

It opens and funds its channels, records what each accepted receipt proves is
owed, pays it with the next cumulative voucher on a cadence (one voucher for
many answers) and tops channels up when they run low. Every record is in the
node's `PaymentBook` before anything that depends on it leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..wire.errors import WireError
from ..wire.messages import PayChannel, PaymentState, VoucherMsg
from .book import ChannelRow, PaymentBook
from .channels import pay_channel_message, voucher_message
from .link import ChainLink, ChannelView
from .money import record_chain_state

log = logging.getLogger(__name__)

# Sends a voucher on the connection to the channel's payee (WireError if it is closed).
Send = Callable[[VoucherMsg], None]


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
        record_chain_state(self.book, view)
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

    def owe(
        self, channel: str, request_id: str, amount_nano: int, seq: int, *, lazy: bool = False
    ) -> Owed | None:
        """Record that a request costs `amount_nano` in all (from a receipt with sequence
        number `seq`; committed with this turn's writes, or with the next commit something
        needs when `lazy`). None: the receipt adds nothing. LedgerError (nothing
        written) if the deposit cannot cover it: top up first.

        A voucher due now is signed in the same transaction (the caller's, if it has
        one) and returned; the caller sends it with `send` once that is committed, so
        nothing leaves before it is on disk."""
        with self.book.transaction(lazy=lazy):
            row = self.book.incur(channel, request_id, amount_nano, seq)
            if row is None:
                return None
            return self._owing_more(row, request_id)

    def owe_new(
        self, items: Sequence[tuple[str, str, int, int]], *, lazy: bool = False
    ) -> dict[str, Owed] | None:
        """`owe` for many requests' first receipts (channel, request id, amount, seq) at
        once (`PaymentBook.incur_new`): what each channel leaves to do. None, and
        nothing written, if any is not new or a deposit cannot cover them: owe them
        one by one.

        Lazy, on a book that defers debts (payments/lazy_debts.py), they are owed in
        memory and written with the next write that needs them (a voucher's, first)."""
        if lazy and self.book.defer_new(items):
            return self.owed_now({item[0] for item in items})
        with self.book.transaction(lazy=lazy):
            if not self.book.incur_new(items):
                return None
            return self.owed_now({item[0] for item in items})

    def owed_now(self, channels: set[str]) -> dict[str, Owed]:
        """`_owing_more` for each channel that owes more now (its debts written, or held
        by the book)."""
        owed = {}
        for channel in channels:
            row = self.book.channel(channel)
            assert row is not None
            owed[channel] = self._owing_more(row)
        return owed

    def _owing_more(self, row: ChannelRow, request_id: str = "") -> Owed:
        """A channel owes more: the voucher due now, signed in the caller's write (it is
        sent once that is on disk), or the timer that pays it on the cadence."""
        channel = row.channel
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
        record_chain_state(self.book, view)
        log.info("topped up channel %s by %d nanotons", view.address, amount_nano)
