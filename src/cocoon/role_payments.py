"""Each role's payment side, opened from its configuration: the chain link, the
book of channels, and the payer or payee (or both, at the proxy) over them."""

from __future__ import annotations

import logging
from pathlib import Path

from .chain.toncenter import TonCenterClient
from .config import (
    ClientConfig,
    PaymentsConfig,
    ProxyConfig,
    WorkerConfig,
)
from .payments.bill_journal import ProxyBook
from .payments.book import PaymentBook
from .payments.journal import JournaledBook
from .payments.lazy_debts import LazyDebtsBook
from .payments.ledger import Ledger
from .payments.link import ChainLink
from .payments.sides import PayeeSide, PayerSide
from .proxy.payments import ProxyPayments

log = logging.getLogger(__name__)


def chain_client(link: ChainLink | None) -> TonCenterClient | None:
    """The chain client of a payments link, for following the root (None: payments off)."""
    return link.client if link is not None else None


def _payee(book: PaymentBook, link: ChainLink, network: str, cfg: PaymentsConfig) -> PayeeSide:
    return PayeeSide(
        book,
        link,
        network=network,
        max_credit_nano=cfg.max_credit_nano,
        redeem_threshold_nano=cfg.redeem_threshold_nano,
    )


def _payer(
    book: PaymentBook, link: ChainLink, network: str, cfg: PaymentsConfig, close_delay: int
) -> PayerSide:
    return PayerSide(
        book,
        link,
        network=network,
        close_delay=close_delay,
        deposit_nano=cfg.deposit_nano,
        top_up_below_nano=cfg.top_up_below_nano,
        voucher_interval_s=cfg.voucher_interval_ms / 1000,
    )


async def proxy_payments(config: ProxyConfig, ledger: Ledger) -> ProxyPayments | None:
    """Payee of client channels and payer of worker channels (None: payments off)."""
    if not config.payments.enabled:
        return None
    link = await ChainLink.open(config.payments)
    # Its record of the requests it forwards, and its bills, go to journals first
    # (payments/expects_journal.py, bill_journal.py).
    book = ProxyBook(
        ledger.db,
        ledger=ledger,
        journal=Path(ledger.path).with_name("expected.journal"),
        bills_journal=Path(ledger.path).with_name("bills.journal"),
        network_id=link.network_id,
        key=link.key,
        commits=ledger.commits,
        receipts=lambda request_id, kept: kept or ledger.receipt(request_id),
    )
    log.info("payments on: wallet %s, root %s", link.address, link.root_address)
    return ProxyPayments(
        book,
        link,
        clients=_payee(book, link, config.network, config.payments),
        workers=_payer(
            book, link, config.network, config.payments, link.root.params.worker_close_delay
        ),
    )


async def _open_book(
    config: PaymentsConfig, data_dir: str, *, payee: bool
) -> tuple[ChainLink, PaymentBook]:
    """A worker's book journals the receipts it is owed (payments/journal.py); a
    client's keeps its debts in memory until a write needs them, and journals them
    before a voucher covers them (payments/lazy_debts.py)."""
    link = await ChainLink.open(config)
    path = Path(data_dir) / "payments.sqlite"
    book: PaymentBook = (
        JournaledBook(
            path,
            journal=path.with_name("receipts.journal"),
            network_id=link.network_id,
            key=link.key,
        )
        if payee
        else LazyDebtsBook(
            path,
            network_id=link.network_id,
            key=link.key,
            journal=path.with_name("debts.journal"),
        )
    )
    log.info("payments on: wallet %s, root %s", link.address, link.root_address)
    return link, book


async def worker_payee(config: WorkerConfig) -> PayeeSide | None:
    """The worker's side of its proxy's channel (None: payments off). Its new receipts
    go to a journal first, folded into the book in batches (payments/journal.py)."""
    if not config.payments.enabled:
        return None
    link, book = await _open_book(config.payments, config.data_dir, payee=True)
    return _payee(book, link, config.network, config.payments)


async def client_payer(config: ClientConfig) -> PayerSide | None:
    """The client's side of its channel to the proxy (None: payments off)."""
    if not config.payments.enabled:
        return None
    link, book = await _open_book(config.payments, config.data_dir, payee=False)
    return _payer(book, link, config.network, config.payments, link.root.params.client_close_delay)
