"""Billing from worker receipts: verify, price, record."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..crypto.errors import ReceiptError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..payments.ledger import Ledger
from ..pricing import Prices, price_nano
from ..wire.messages import Request

log = logging.getLogger(__name__)


class Biller:
    """Checks that a receipt is for this request from this worker; writes the charge."""

    def __init__(self, ledger: Ledger, prices: Callable[[Request], Prices], network: str) -> None:
        self.ledger = ledger
        # Prices by the root version a request was sealed under.
        self.prices = prices
        self.network = network

    def check(
        self,
        receipt_bytes: bytes,
        request: Request,
        *,
        worker_key: bytes,
        coefficient_milli: int,
        request_hash: bytes | None = None,
    ) -> Receipt:
        """The receipt, verified to be for this request from this worker at its price;
        ReceiptError if it proves nothing."""
        receipt = verify_receipt(receipt_bytes, self.network, worker_key)
        if receipt.request_id != request.request_id or receipt.model != request.model:
            raise ReceiptError("receipt is for another request")
        expected_hash = request_hash if request_hash is not None else sha256(request.sealed)
        if receipt.request_hash != expected_hash:
            raise ReceiptError("receipt does not cover the request that was sent")
        if receipt.coefficient_milli != coefficient_milli:
            raise ReceiptError("receipt states another price coefficient than the worker announced")
        if receipt.coefficient_milli > request.max_coefficient_milli:
            raise ReceiptError("receipt's price coefficient is above the client's bound")
        return receipt

    def record(
        self,
        receipt: Receipt,
        receipt_bytes: bytes,
        request: Request,
        *,
        worker_key_id: str,
        client_key_id: str,
        coefficient_milli: int,
    ) -> bool:
        """Write the charge of a checked receipt; whether the ledger now holds it (not an
        older one, nor another worker's)."""
        return self.ledger.record(
            receipt,
            receipt_bytes,
            client_key=client_key_id,
            worker_key=worker_key_id,
            coefficient_milli=coefficient_milli,
            amount_nano=self.price(receipt, coefficient_milli, request),
        )

    def price(self, receipt: Receipt, coefficient_milli: int, request: Request) -> int:
        return price_nano(
            self.prices(request),
            prompt_tokens=receipt.prompt_tokens,
            cached_prompt_tokens=receipt.cached_prompt_tokens,
            completion_tokens=receipt.completion_tokens,
            reasoning_tokens=receipt.reasoning_tokens,
            coefficient_milli=coefficient_milli,
        )
