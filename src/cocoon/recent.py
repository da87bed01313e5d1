"""Tables that keep only their newest entries (insertion-ordered, oldest dropped)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: OrderedDict[K, V], key: K, value: V, limit: int) -> V:
    """Keep `value` under `key` among the `limit` newest entries of `table`."""
    table[key] = value
    while len(table) > limit:
        table.popitem(last=False)
    return value


def newest(table: OrderedDict[K, V], key: K, make: Callable[[], V], limit: int) -> V:
    """The entry under `key`, now the newest; made by `make` if missing (the least
    recently used dropped past `limit` entries). For tables that never hold None."""
    value = table.get(key)
    if value is None:
        return remember(table, key, make(), limit)
    table.move_to_end(key)
    return value
