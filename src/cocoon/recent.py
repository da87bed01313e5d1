"""Tables that keep only their newest entries (insertion-ordered, oldest dropped)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: OrderedDict[K, V], key: K, value: V, limit: int) -> V:
    """Keep `value` under `key` among the `limit` newest entries of `table`."""
    table[key] = value
    while len(table) > limit:
        table.popitem(last=False)
    return value
