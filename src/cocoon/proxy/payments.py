"""The proxy's two kinds of channel: clients pay it, it pays its workers (DESIGN §6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..payments.book import PaymentBook
from ..payments.link import ChainLink
from ..payments.sides import PayeeSide, PayerSide
from ..wire.transport import Channel


@dataclass
class ProxyPayments:
    """Payee of client channels, payer of worker channels, one book for both."""

    book: PaymentBook
    link: ChainLink
    clients: PayeeSide
    workers: PayerSide
    # Which channel pays for (client connection) / is paid from (worker key id).
    client_channels: dict[Channel, str] = field(default_factory=dict)
    worker_channels: dict[str, str] = field(default_factory=dict)
