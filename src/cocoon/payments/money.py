"""What a receipt proves is owed, and the worker's share of it (integer nanotons)."""

from __future__ import annotations

from ..crypto.receipts import Receipt
from ..pricing import Prices, price_nano
from .book import PaymentBook
from .link import ChannelView

BP = 10_000


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


def record_chain_state(book: PaymentBook, view: ChannelView) -> None:
    """What the chain says of a channel: its deposit and redeemed total."""
    book.set_chain_state(
        view.address, deposit_nano=view.state.deposit, redeemed_nano=view.state.redeemed
    )
