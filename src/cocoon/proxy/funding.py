"""How much of the proxy's TON a worker's channel holds: a little at first, more as it earns.

A proxy funds a channel to each worker it admits, so that the worker can
trust it to be paid. Funding it at once with the proxy's full deposit (10 TON)
let any identity the policy accepts lock 10 TON of the proxy's wallet per new
wallet address it names, before serving anything (issue 16, item 5). So:

- a channel is opened only for a worker that passed the proxy's policy: the
  handshake's attestation, then the root's rules and the worker's stake
  (`Admission.admit`), and only then;
- its first deposit is `initial_nano` (1 TON by default): enough for the
  credit a worker extends before it is paid (0.1 TON) many times over;
- once less than a quarter of the deposit is left unowed, it is topped up by
  as much as the worker has earned on it so far (at least `initial_nano`),
  so the deposit grows with what the worker has proven it serves, while
  what is locked beyond its earnings stays within `max_headroom_nano` (the
  configured `payments.deposit_nano`).

Pure arithmetic over the book's figures; `ProxyPayments` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..payments.book import ChannelRow

TON = 1_000_000_000


@dataclass(frozen=True)
class FundingPolicy:
    """Deposits of the proxy's channels to workers."""

    # The first deposit of a worker's channel.
    initial_nano: int = TON
    # The most of the deposit that may be unowed (locked beyond what was earned).
    max_headroom_nano: int = 10 * TON

    @classmethod
    def within(cls, deposit_nano: int) -> FundingPolicy:
        """The policy for a proxy whose configured deposit is `deposit_nano`: it starts
        workers with the smaller of 1 TON and that, and locks at most that unearned."""
        return cls(initial_nano=min(TON, deposit_nano), max_headroom_nano=deposit_nano)

    def low(self, row: ChannelRow) -> bool:
        """Less than a quarter of the deposit is left unowed: time to top up."""
        return 4 * row.uncommitted_nano < row.deposit_nano

    def top_up_nano(self, row: ChannelRow) -> int:
        """What to add to a low channel: what the worker earned on it (at least the
        initial deposit), within the headroom; 0 when nothing should be added."""
        if not self.low(row):
            return 0
        amount = max(row.owed_nano, self.initial_nano)
        return max(0, min(amount, self.max_headroom_nano - row.uncommitted_nano))
