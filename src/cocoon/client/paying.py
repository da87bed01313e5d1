"""The client's side of one proxy's payment channel.

Opened when the proxy states its terms (a channel on the chain the client
follows, to the proxy's wallet); each request leaves with the client's tag,
which proves to it later that it sent the request (its record on disk first
only where the tag cannot: a request moved from another proxy, a proxy that
returns no tags); what an accepted receipt proves is owed as the answer goes on to
the app (written with the turn's other debts at its end, committed lazily: lost in
a crash, it comes back as the proxy's invoice), priced at the root version the
request was sealed under; the voucher paying it follows on the payer's cadence,
on disk before it leaves; an invoice is paid only for a request this client sent
through this very proxy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import msgspec

from ..config import ClientConfig
from ..crypto.errors import CryptoError
from ..crypto.receipts import Receipt, verify_receipt
from ..node import NodeCredentials
from ..payments.book import Expected
from ..payments.errors import LedgerError, PaymentError
from ..payments.request_auth import TAG_MINOR, RequestTagger, auth_key, tag_matches
from ..payments.sides import Owed, PayerSide, payments_snapshot, receipt_price
from ..payments.turns import TurnWrites
from ..pricing import Prices
from ..recent import remember
from ..registry.follower import RootFollower, request_prices
from ..wire.errors import WireError
from ..wire.messages import Invoice, PaymentState, PaymentTerms, Request
from ..wire.transport import Channel

log = logging.getLogger(__name__)


# Recent requests remembered: their tier (for invoices), their amount so far, and
# whether they were invoiced.
TIERS_KEPT = 4096
# A debt of this turn: channel, request id, amount in all, receipt seq, worker key, and
# whether it is new to the book (`pay`).
Debt = tuple[str, str, int, int, bytes, bool]


class ProxyPayments:
    """Payments to one proxy (inert without a payer: payments off)."""

    def __init__(
        self,
        payer: PayerSide | None,
        config: ClientConfig,
        credentials: NodeCredentials,
        follower: RootFollower | None,
    ) -> None:
        self.payer = payer
        self.config = config
        self.credentials = credentials
        self.follower = follower
        # The channel to the proxy, ready once the proxy took it.
        self.channel: str | None = None
        self.state: PaymentState | None = None
        self.ready = asyncio.Event()
        self.problem = ""
        self.top_up: asyncio.Task[bool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The tier of recent requests not of plain `tee`: an invoice is priced at it.
        self._tiers: OrderedDict[str, tuple[str, int]] = OrderedDict()
        # What this client owes each worker through this proxy (raw key → nanotons),
        # what a report of a failed audit states it paid; and each recent request's
        # amount so far, since receipts are cumulative.
        self.paid_to: dict[bytes, int] = {}
        self._amounts: OrderedDict[str, int] = OrderedDict()
        # Debts owed this turn of the loop, written together at its end (turns.py).
        self.debts: TurnWrites[Debt] = TurnWrites(self._write_debts)
        # Requests the proxy invoiced lately: their rows may be written already.
        self._invoiced: OrderedDict[str, None] = OrderedDict()
        # The key of this client's request tags (none without payments).
        self._auth_key = auth_key(payer.link.key) if payer is not None else b""
        self._tagger: RequestTagger | None = None

    def on_terms(self, channel: Channel, terms: PaymentTerms) -> None:
        task = asyncio.create_task(self._open(channel, terms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_state(self, message: PaymentState) -> None:
        self.state = message
        self.ready.set()
        if self.payer is not None:
            self.payer.heard(message)

    def detach(self, channel: Channel) -> None:
        """The connection to the proxy ended: vouchers wait for the next one."""
        self.ready.clear()
        if self.payer is not None and self.channel is not None:
            self.payer.detach(self.channel, channel.send_nowait)

    def flush(self) -> None:
        """Voucher what this proxy's channel owes now, if its connection takes it."""
        self.debts.flush()
        if self.payer is not None and self.channel is not None:
            self.payer.flush(self.channel)

    def stop(self) -> None:
        self.debts.flush()
        if self.payer is not None:
            # What is owed on the cadence leaves before the connection closes.
            self.payer.stop()

    async def record(
        self,
        request: Request,
        request_hash: bytes,
        signers: list[bytes],
        moved: bool,
        proxy: Channel,
    ) -> Request:
        """The request about to leave on `proxy`, carrying the tag that proves this
        client sent it (request_auth.py). It is recorded in the book too (what a receipt
        for it must match), on disk before it leaves, only when moved from another proxy
        (its record is what says the first proxy is owed nothing), or sent to a proxy too
        old to return the tag with an invoice: any other invoice shows the tag, which
        proves all the record would (request, hash, signers, price bound) for this
        channel. At c=64 the record was a fifth of the client's writes to its book file
        and costs nothing to leave out (issue 18)."""
        if self.payer is None or self.channel is None:
            return request
        if request.tier or request.replicas != 1:
            remember(self._tiers, request.request_id, (request.tier, request.replicas), TIERS_KEPT)
        auth = self._tag(request.request_id, request_hash, request.max_coefficient_milli, signers)
        if moved or proxy.peer_minor < TAG_MINOR:
            self.payer.book.expect(
                request.request_id,
                self.channel,
                request_hash=request_hash,
                signers=signers,
                max_coefficient_milli=request.max_coefficient_milli,
                moved=moved,
            )
            await self.durable()
        return msgspec.structs.replace(request, auth=auth)

    def _tag(
        self, request_id: str, request_hash: bytes, max_coefficient_milli: int, signers: list[bytes]
    ) -> bytes:
        """This client's tag of a request on its channel to this proxy."""
        assert self.payer is not None and self.channel is not None
        tagger = self._tagger
        if tagger is None or tagger.channel != self.channel:
            tagger = self._tagger = RequestTagger(
                self._auth_key, network_id=self.payer.link.network_id, channel=self.channel
            )
        return tagger.tag(request_id, request_hash, max_coefficient_milli, signers)

    def _vouched(self, invoice: Invoice) -> Expected | None:
        """What an invoice's tag proves this client sent, when it has no record of the
        request (it keeps none where the tag proves as much); None if the tag is not
        this client's."""
        if self.payer is None or self.channel is None or not invoice.auth:
            return None
        try:
            receipt = verify_receipt(invoice.receipt, self.config.network)
        except CryptoError:
            return None
        expected = self._tag(
            invoice.request_id, receipt.request_hash, invoice.max_coefficient_milli, invoice.signers
        )
        if not tag_matches(invoice.auth, expected):
            return None
        return Expected(
            invoice.request_id,
            self.channel,
            receipt.request_hash,
            tuple(invoice.signers),
            invoice.max_coefficient_milli,
            "",
        )

    async def durable(self) -> None:
        """Return once what was expected and owed so far is on disk: the writes of one
        turn of the event loop share a commit (payments/commits.py)."""
        if self.payer is not None:
            await self.payer.book.durable()

    async def _open(self, channel: Channel, terms: PaymentTerms) -> None:
        payer = self.payer
        if payer is None:
            self.problem = "the proxy asks for payment; this client has no payments.*"
            log.warning(self.problem)
            return
        try:
            if (
                terms.chain_network != payer.link.network_id
                or terms.root != payer.link.root_address
            ):
                raise PaymentError(
                    f"the proxy is on network {terms.chain_network} (root {terms.root}), this"
                    f" client on {payer.link.network_id} (root {payer.link.root_address})"
                )
            row = await payer.open(terms.wallet, peer=channel.key_id)
            self.channel = row.channel
            channel.send_nowait(
                payer.announce(
                    row.channel, payer_node=self.credentials.key_id, payee_node=channel.key_id
                )
            )
            # Queued right behind the PayChannel (which carries a voucher for all owed):
            # later vouchers follow it on this connection.
            payer.attach(row.channel, channel.send_nowait, max_credit_nano=terms.max_credit_nano)
            await channel.drain()
        except (PaymentError, WireError) as exc:
            self.problem = f"cannot pay the proxy: {exc}"
            log.warning(self.problem)

    def status(self) -> dict[str, object] | None:
        """Balances for /jsonstats: the channel, its deposit and what was paid."""
        self.debts.flush()
        payer = self.payer
        if payer is None:
            return None
        status = payments_snapshot(payer.book, payer.link)
        status["channel"] = self.channel
        status["ready"] = self.ready.is_set()
        status["problem"] = self.problem or None
        status["top_ups"] = payer.top_ups
        return status

    def prices_at(self, root_version: int, tier: str = "", replicas: int = 1) -> Prices:
        """The prices of the root version a request was sealed under, at its tier."""
        own = self.payer.link.prices if self.payer is not None else None
        return request_prices(self.follower, own, root_version, tier, replicas)

    def pay(
        self,
        request_id: str,
        receipt: Receipt,
        channel: str | None = None,
        root_version: int = 0,
        tier: str = "",
        replicas: int = 1,
        *,
        first: bool = False,
        prices: Prices | None = None,
    ) -> int | None:
        """Owe what an accepted receipt proves; returns what the request costs in all so
        far (None: payments off). `first`: the first receipt paid of an answer to a
        request this client sent, so new to the book unless the proxy invoiced it.
        `prices`: those of `root_version` at `tier`, where the caller has them.

        The debt is written at the end of this turn of the event loop, with every other
        debt of the turn, in one go (payments/turns.py): lazily, as before (nothing waits
        for it; lost in a crash, it comes back as the proxy's invoice), but no longer
        one write among the client's other work. Together, a turn's writes run on warm
        caches: the client's CPU a request fell by 40-80 µs at c=64 (issue 18). The
        voucher paying it follows on the payer's cadence."""
        payer = self.payer
        channel = channel or self.channel
        if payer is None or channel is None:
            return None
        if prices is None:
            prices = self.prices_at(root_version, tier, replicas)
        amount = receipt_price(prices, receipt)
        new = first and request_id not in self._invoiced
        self.debts.add((channel, request_id, amount, receipt.seq, receipt.worker_key, new))
        return amount

    def _write_debts(self, debts: list[Debt]) -> None:
        """Owe a turn's debts, all at once; a voucher due leaves once it is on disk. A
        debt the deposit cannot cover is not written (the proxy refuses what it cannot
        be paid for; it invoices the rest once topped up)."""
        payer = self.payer
        if payer is None:
            return
        # Under load nearly all are the first receipts of requests new to the book: owed
        # at once in memory, written with the next write that needs them; vouchers
        # signed from memory pay them (payments/lazy_debts.py). Anything else, one by
        # one: the book folds first and reads the request's row.
        new = [debt for debt in debts if debt[5]]
        dues = payer.owe_new([debt[:4] for debt in new], lazy=True) if new else None
        if dues is not None:
            for _, request_id, amount, _, worker_key, _ in new:
                self._count_paid(request_id, amount, worker_key)
            for channel, due in dues.items():
                self._after_owing(channel, due)
            debts = [debt for debt in debts if not debt[5]]
            if not debts:
                return
        with payer.book.transaction(lazy=True):
            for channel, request_id, amount, seq, worker_key, _ in debts:
                try:
                    owed = payer.owe(channel, request_id, amount, seq, lazy=True)
                except LedgerError as exc:
                    log.warning("%s not owed yet: %s", request_id, exc)
                    self._start_top_up(channel)
                    continue
                if owed is not None:
                    self._count_paid(request_id, amount, worker_key)
                    self._after_owing(channel, owed)

    def _count_paid(self, request_id: str, amount: int, worker_key: bytes) -> None:
        """What a request costs so far, and what this client paid its worker through it."""
        before = self._amounts.pop(request_id, 0)
        remember(self._amounts, request_id, amount, TIERS_KEPT)
        self.paid_to[worker_key] = self.paid_to.get(worker_key, 0) + max(0, amount - before)

    def _after_owing(self, channel: str, owed: Owed) -> None:
        """Send the voucher due (once it is on disk); top up a channel running low."""
        assert self.payer is not None
        if owed.voucher is not None:
            self.payer.send(channel, owed.voucher)
        if owed.low:
            self._start_top_up(channel)

    def _start_top_up(self, channel: str) -> None:
        payer = self.payer
        if payer is None or (self.top_up is not None and not self.top_up.done()):
            return

        async def top_up() -> bool:
            try:
                return await payer.top_up_if_low(channel)
            except PaymentError as exc:
                log.warning("top-up of channel %s failed: %s", channel, exc)
                return False

        self.top_up = asyncio.create_task(top_up())

    def on_invoice(self, channel: Channel, invoice: Invoice) -> None:
        """The proxy shows a receipt we did not pay (we crashed, or the answer was lost):
        pay it if it is for a request we sent, signed by a worker we sealed it to."""
        payer = self.payer
        if payer is None:
            return
        expected = payer.book.expected(invoice.request_id) or self._vouched(invoice)
        problem = ""
        receipt = None
        if expected is None:
            problem = "for a request this client never sent"
        elif expected.channel != self.channel:
            # Failed over: the request went out again through another proxy, which
            # answered it; this proxy delivered nothing and is owed nothing for it.
            problem = "for a request answered through another proxy"
        else:
            try:
                receipt = verify_receipt(invoice.receipt, self.config.network)
            except CryptoError as exc:
                problem = f"does not verify: {exc}"
            else:
                if receipt.worker_key not in expected.signers:
                    problem = "signed by a worker the request was not sealed to"
                elif (
                    receipt.request_id != invoice.request_id
                    or receipt.request_hash != expected.request_hash
                ):
                    problem = "for another request"
                elif receipt.coefficient_milli > expected.max_coefficient_milli:
                    problem = "above the price bound"
        if problem or receipt is None or expected is None:
            log.warning("invoice for %s refused: receipt %s", invoice.request_id, problem)
            return
        # Its row may be written (paid before a restart, or by the answer still coming):
        # this and any later debt of it are owed against that row, not as new.
        remember(self._invoiced, invoice.request_id, None, TIERS_KEPT)
        self.pay(
            invoice.request_id,
            receipt,
            expected.channel,
            self.follower.version if self.follower else 0,
            *self._tiers.get(invoice.request_id, ("", 1)),
        )
        self.debts.flush()
        # The proxy asks: pay now, not on the cadence.
        payer.flush(expected.channel)
        log.info("paid the invoice for %s", invoice.request_id)
