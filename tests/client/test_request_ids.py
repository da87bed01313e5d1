"""Request ids grow with time (the books' indexes append) and stay unguessable."""

from __future__ import annotations

import re
import time

from cocoon.client.request_ids import new_request_id


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_ids_of_later_milliseconds_sort_after() -> None:
    first = new_request_id()
    deadline = time.monotonic() + 1.0
    while (later := new_request_id())[:12] == first[:12] and time.monotonic() < deadline:
        pass
    assert later > first
    assert int(first[:12], 16) <= time.time_ns() // 1_000_000
