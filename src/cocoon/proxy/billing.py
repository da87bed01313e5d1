"""Billing from worker receipts: the checks a receipt passes before it is billed."""

from __future__ import annotations

import logging

from ..crypto.errors import ReceiptError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..wire.messages import Request

log = logging.getLogger(__name__)


class Biller:
    """Checks that a receipt is for this request from this worker, at its price (what
    the check proves is billed in `bills.py`)."""

    def __init__(self, network: str) -> None:
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
