"""Bounded tables (cocoon.recent): which entries stay, which go."""

from __future__ import annotations

from collections import OrderedDict

from cocoon.recent import newest, remember


def test_remember_keeps_the_newest_entries_and_returns_the_value() -> None:
    table: OrderedDict[str, int] = OrderedDict()
    for number in range(5):
        assert remember(table, f"k{number}", number, limit=3) == number
    assert list(table.items()) == [("k2", 2), ("k3", 3), ("k4", 4)]


def test_remember_of_a_key_held_replaces_its_value_in_place() -> None:
    table: OrderedDict[str, int] = OrderedDict([("a", 1), ("b", 2), ("c", 3)])
    remember(table, "a", 10, limit=3)
    remember(table, "d", 4, limit=3)
    # "a" kept its place, so it was the oldest and went first.
    assert list(table.items()) == [("b", 2), ("c", 3), ("d", 4)]


def test_newest_makes_a_missing_entry_once_and_drops_the_least_recently_used() -> None:
    table: OrderedDict[str, list[int]] = OrderedDict()
    made: list[str] = []

    def make(key: str) -> list[int]:
        made.append(key)
        return []

    first = newest(table, "a", lambda: make("a"), limit=2)
    first.append(1)
    newest(table, "b", lambda: make("b"), limit=2)
    # Touching "a" makes it the newest: "b" is now the one to go.
    assert newest(table, "a", lambda: make("a"), limit=2) is first
    newest(table, "c", lambda: make("c"), limit=2)
    assert made == ["a", "b", "c"]
    assert list(table) == ["a", "c"]
    assert table["a"] == [1]
