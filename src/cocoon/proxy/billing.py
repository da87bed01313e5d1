"""Billing from worker receipts: the checks a receipt passes before it is billed.

A receipt comes on the worker's link, a TLS session bound to the worker's
attested key, the key that signs its receipts: the bytes are the worker's
whether or not we check its signature (57 µs, the largest step a request took
in the proxy). The signature is what makes a receipt evidence for others, so
it is checked wherever a receipt is used as such (an invoice, an equivocation)
and, on the billing path, on a worker's first receipt and then on a random one
in `signature_every`. A signature that fails costs its worker the bill, and
every later receipt from that worker is checked in full: a signer gone wrong is
found within a few receipts, and it is the worker's own pay that it spoils.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from ..crypto.errors import ReceiptError
from ..crypto.hashing import sha256
from ..crypto.receipts import Receipt, verify_receipt
from ..wire.messages import Request

log = logging.getLogger(__name__)


class Biller:
    """Checks that a receipt is for this request from this worker, at its price (what
    the check proves is billed in `bills.py`)."""

    def __init__(
        self,
        network: str,
        signature_every: int = 1,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.network = network
        self.signature_every = signature_every
        self._draw = draw
        # Workers whose first receipt passed in full, and those whose check failed.
        self._trusted: set[bytes] = set()
        self._suspect: set[bytes] = set()
        self.signatures_checked = 0

    def _signature_due(self, worker_key: bytes) -> bool:
        if worker_key not in self._trusted or self.signature_every <= 1:
            return True
        return self._draw() * self.signature_every < 1

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
        signature = self._signature_due(worker_key)
        self.signatures_checked += signature
        try:
            receipt = verify_receipt(receipt_bytes, self.network, worker_key, signature=signature)
        except ReceiptError:
            self._trusted.discard(worker_key)
            self._suspect.add(worker_key)
            raise
        if signature and worker_key not in self._suspect:
            self._trusted.add(worker_key)
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
