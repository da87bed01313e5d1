"""Request ids that sort by time, like UUIDv7: 48 bits of milliseconds, 80 random bits.

Every node keys its books by request id (the proxy's charges, each side's
channel requests, the payers' expected requests). Random ids put each insert
on a random page of those indexes, so a commit wrote and a checkpoint copied
a page per request per index; ids that grow with time append to the same few
pages. In a loop of the proxy's per-request writes, eight requests a
transaction, time-ordered ids made commits 15-21 µs a request instead of
35-50 µs, and the statements a quarter cheaper. The time they show is no news
to a proxy, which sees when each request arrives; 80 random bits keep them
unguessable and unique.
"""

from __future__ import annotations

import secrets
import time


def new_request_id() -> str:
    """32 hex digits, increasing with time (within a millisecond, in any order)."""
    return f"{time.time_ns() // 1_000_000 & (2**48 - 1):012x}{secrets.token_hex(10)}"
