"""Two receipts one worker signed for the same request and seq that differ: proven, and
sent to the worker's stake, which slashes it (DESIGN §11; contracts/stake.tolk).

An honest worker never signs one (request, seq) twice (a retry goes on from the seq
it reached). Where a proxy can catch one: a worker invoices a receipt for a slot the
proxy billed already, with other contents (more tokens, say). The proxy holds both:
the ledger keeps the receipt it billed. With payments on (a wallet to pay the fees)
and the root followed (to find the stake), the proof goes on chain at once; a fifth
of the slash comes to the proxy's wallet.
"""

from __future__ import annotations

import asyncio
import logging

from ..chain.slashing import submit_equivocation
from ..chain.wallet_base import Wallet
from ..crypto.errors import ReceiptError
from ..crypto.receipts import equivocation_proof
from ..registry.follower import RootFollower

log = logging.getLogger(__name__)


class Equivocations:
    """Proofs found, and their way to the chain."""

    def __init__(self, follower: RootFollower | None, wallet: Wallet | None) -> None:
        self.follower = follower
        self.wallet = wallet
        self.found = 0
        self.submitted = 0
        self.slashed_nano = 0
        self.failures: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def compare(self, billed: bytes, shown: bytes, worker_key: bytes, owner: str) -> bool:
        """Whether `shown` and the `billed` receipt prove an equivocation; if they do,
        the proof is on its way to the worker's stake."""
        try:
            equivocation_proof(billed, shown)
        except ReceiptError:
            return False
        self.found += 1
        log.warning("worker %s equivocated: two receipts for one slot", worker_key.hex()[:16])
        if self.follower is None or self.wallet is None or not owner:
            self.failures.append("no root, wallet or worker wallet to reach its stake")
            return True
        stake = self.follower.stake_address(owner, worker_key)
        task = asyncio.create_task(self._submit(self.wallet, stake, billed, shown))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _submit(self, wallet: Wallet, stake: str, a: bytes, b: bytes) -> None:
        try:
            result = await submit_equivocation(wallet, stake, a, b)
        except Exception as exc:  # the chain's errors, in one line
            self.failures.append(str(exc))
            log.warning("the equivocation proof for %s was refused: %s", stake, exc)
            return
        self.submitted += 1
        self.slashed_nano += result.slashed_nano
        log.warning(
            "equivocation proven on %s: %d nanotons slashed, %d to us",
            stake,
            result.slashed_nano,
            result.reward_nano,
        )

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def status(self) -> dict[str, object]:
        return {
            "found": self.found,
            "submitted": self.submitted,
            "slashed_nano": self.slashed_nano,
            "failures": self.failures[-8:],
        }
