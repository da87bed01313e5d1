"""The two ends of a payment channel, as the nodes run them (one import for the roles).

`PayerSide` (`payer.py`: a client towards its proxy, a proxy towards its
workers) and `PayeeSide` (`payee.py`: a proxy from its clients, a worker from
its proxy) both write to the node's `PaymentBook` before anything leaves;
`money.py` prices receipts and splits them; here, their balances for status
pages.
"""

from __future__ import annotations

from .book import PaymentBook
from .link import ChainLink
from .money import BP, receipt_price, record_chain_state, worker_share
from .payee import COLLECT_AT_STOP_S, PayeeSide
from .payer import Owed, PayerSide, Send

__all__ = [
    "BP",
    "COLLECT_AT_STOP_S",
    "Owed",
    "PayeeSide",
    "PayerSide",
    "Send",
    "payments_snapshot",
    "receipt_price",
    "record_chain_state",
    "worker_share",
]


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
