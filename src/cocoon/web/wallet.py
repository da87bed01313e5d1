"""The wallet page's data and actions: the client's channel, what it spent, top-up, close.

Spend over time and per model is read from the client's recent answers (the
newest 4096, each with what its receipts made it owe): the page's charts show
this process's answers, the channel's totals come from the payment book.
Top-up and close go through the node's own payer and chain link, as the node's
automatic top-up does.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from ..client.proxies import ProxyPool
from ..payments.errors import PaymentError
from ..payments.sides import payments_snapshot

NANO = 1_000_000_000
# More than any local or test deposit; a typo of a few more digits is refused.
MAX_TOP_UP_NANO = 1_000_000 * NANO
# "1000000.000000000" and a little room: a longer amount is not a typo to help with.
MAX_AMOUNT_CHARS = 40


class WalletError(Exception):
    """A wallet action that cannot be done; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_ton(text: object) -> int:
    """TON as a decimal string (or number) → nanotons, exactly; WalletError if not."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise WalletError(400, "amount_ton is not a number (send a decimal string)")
    written = str(text).strip()
    if len(written) > MAX_AMOUNT_CHARS:
        raise WalletError(400, f"amount_ton is longer than {MAX_AMOUNT_CHARS} characters")
    try:
        value = Decimal(written)
        if not value.is_finite():
            raise InvalidOperation
        # Past the bound first: "1e999999999" would overflow the multiplication.
        if not 0 < value <= MAX_TOP_UP_NANO // NANO:
            raise WalletError(
                400, f"amount_ton must be above 0 and at most {MAX_TOP_UP_NANO // NANO}"
            )
        nano = value * NANO
        if nano != nano.to_integral_value():
            raise WalletError(400, "amount_ton has more than 9 decimals")
    except ArithmeticError:
        # Not shown back: the amount is the app's text.
        raise WalletError(400, "amount_ton is not a number") from None
    return int(nano)


def spending(pool: ProxyPool) -> dict[str, Any]:
    """Each recent paid answer (oldest first) and the totals per model."""
    answers: list[dict[str, Any]] = []
    per_model: dict[str, int] = {}
    for result in list(pool.results.values()):
        receipt = result.receipt
        if receipt is None or result.amount_nano is None:
            continue
        answers.append(
            {
                "request_id": result.request_id,
                "at_ms": receipt.finished_ms,
                "model": receipt.model,
                "amount_nano": result.amount_nano,
                "tokens": receipt.prompt_tokens + receipt.completion_tokens,
            }
        )
        per_model[receipt.model] = per_model.get(receipt.model, 0) + result.amount_nano
    answers.sort(key=lambda a: a["at_ms"])
    return {
        "answers": answers,
        "per_model": per_model,
        "total_nano": sum(per_model.values()),
    }


def _channel(pool: ProxyPool) -> str:
    primary = pool.primary
    channel = primary.pay_channel if primary is not None else None
    if pool.payer is None:
        raise WalletError(409, "payments are off on this client")
    if not channel:
        raise WalletError(409, "no payment channel is open yet")
    return channel


async def wallet_status(pool: ProxyPool) -> dict[str, Any]:
    """The wallet, each channel it pays into (book and chain), and what was spent."""
    payer = pool.payer
    if payer is None:
        return {"payments": None, "channels": [], "spend": spending(pool)}
    in_use = pool.primary.pay_channel if pool.primary is not None else None
    proxies = {channel: address for address, channel in _channels_by_proxy(pool).items()}
    rows = []
    snapshot: list[dict[str, Any]] = payments_snapshot(payer.book, payer.link)["channels"]  # type: ignore[assignment]
    for row in snapshot:
        if row["side"] != "payer":
            continue
        channel = str(row["channel"])
        try:
            view = await payer.link.lookup(channel)
        except PaymentError:
            view = None
        rows.append(
            {
                **row,
                "proxy": proxies.get(channel),
                "in_use": channel == in_use,
                "close_at": view.state.close_at or None if view is not None else None,
                "balance_nano": view.state.balance if view is not None else None,
                "remaining_nano": int(row["deposit_nano"]) - int(row["owed_nano"]),
            }
        )
    return {
        "payments": {
            "wallet": payer.link.address,
            "root": payer.link.root_address,
            "network_id": payer.link.network_id,
            "totals": payer.book.totals(),
            "top_ups": payer.top_ups,
        },
        "channels": rows,
        "spend": spending(pool),
    }


def _channels_by_proxy(pool: ProxyPool) -> dict[str, str]:
    return {s.address: s.pay_channel for s in pool.sessions.values() if s.pay_channel}


async def top_up(pool: ProxyPool, amount_nano: int) -> dict[str, Any]:
    channel = _channel(pool)
    assert pool.payer is not None
    try:
        if not await pool.payer.top_up(channel, amount_nano):
            raise WalletError(409, f"channel {channel} is not on chain")
    except PaymentError as exc:
        raise WalletError(502, str(exc)) from None
    return {"channel": channel, "topped_up_nano": amount_nano}


async def close(pool: ProxyPool) -> dict[str, Any]:
    channel = _channel(pool)
    payer = pool.payer
    assert payer is not None
    try:
        view = await payer.link.lookup(channel, fresh=True)
        if view is None:
            raise WalletError(409, f"channel {channel} is not on chain")
        view = await payer.link.start_close(view)
    except PaymentError as exc:
        raise WalletError(502, str(exc)) from None
    return {"channel": channel, "close_at": view.state.close_at}
