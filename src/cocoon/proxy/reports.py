"""The proxy's reputation of its workers, from the reports its clients send.

A client whose audit failed sends the proxy a signed report (audit/reports.py).
The proxy cannot judge the scores (it never sees plaintext), so it weighs a
report by what its reporter paid the audited worker through this proxy, as
its own ledger says (never more than the report claims): a client that paid
nothing moves nothing, and smearing a worker costs what its answers cost.
Each report counts once. Routing (proxy/router.py) skips workers below the
threshold and prefers reputable ones.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from ..audit.reports import ReportError, receipts_of, verify_report
from ..audit.reputation import Reputation
from ..crypto.signing import key_id
from ..payments.ledger import Ledger
from ..recent import remember

log = logging.getLogger(__name__)

# A report whose reporter paid the worker this much (nanotons) weighs as much as an
# audit of the proxy's own; less, proportionally less.
FULL_WEIGHT_NANO = 10_000_000
NONCES_KEPT = 100_000


class ReportDesk:
    """Takes clients' reports; keeps the proxy's reputation of workers."""

    def __init__(
        self,
        network: str,
        ledger: Ledger,
        reputation: Reputation | None = None,
        full_weight_nano: int = FULL_WEIGHT_NANO,
    ) -> None:
        self.network = network
        self.ledger = ledger
        self.reputation = reputation or Reputation()
        self.full_weight_nano = full_weight_nano
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._keys: dict[str, bytes] = {}  # worker key id → raw key, for routing
        self.taken = 0
        self.last: bytes | None = None  # the latest report taken, as it came
        self.refused: dict[str, int] = {}

    def know(self, worker_key_id: str, public_key: bytes) -> None:
        self._keys[worker_key_id] = public_key

    def score(self, worker_key_id: str) -> float:
        key = self._keys.get(worker_key_id)
        return 0.5 if key is None else self.reputation.score(key, time.monotonic())

    def milli(self, worker_key_id: str) -> int:
        return int(self.score(worker_key_id) * 1000)

    def take(self, client_key: bytes, data: bytes) -> str:
        """One report from the client of that connection; what became of it ("ok" or
        why not)."""
        outcome = self._take(client_key, data)
        if outcome == "ok":
            self.taken += 1
            self.last = data
        else:
            self.refused[outcome] = self.refused.get(outcome, 0) + 1
        return outcome

    def _take(self, client_key: bytes, data: bytes) -> str:
        try:
            report = verify_report(data, self.network)
            audited, _ = receipts_of(report)
        except ReportError as exc:
            log.warning("report refused: %s", exc)
            return "invalid"
        if report.reporter_key != client_key:
            return "not_the_reporter"
        # One report per audited answer and reporter, however often it is sent.
        seen = report.reporter_key + audited.request_id.encode()
        if seen in self._seen or report.nonce in self._seen:
            return "duplicate"
        remember(self._seen, seen, None, NONCES_KEPT)
        remember(self._seen, report.nonce, None, NONCES_KEPT)
        paid_here = self.ledger.paid_between(key_id(client_key), key_id(report.worker_key))
        weight = min(report.paid_nano, paid_here) / self.full_weight_nano
        self.reputation.reported(report.worker_key, client_key, time.monotonic(), weight=weight)
        log.warning(
            "report on worker %s from client %s: %s (paid %d nanotons here, weight %.3f)",
            key_id(report.worker_key),
            key_id(client_key),
            report.reason,
            paid_here,
            min(1.0, weight),
        )
        return "ok"

    def status(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "taken": self.taken,
            "refused": dict(self.refused),
            "threshold": self.reputation.threshold,
            "workers": {kid: self.reputation.snapshot(key, now) for kid, key in self._keys.items()},
        }
