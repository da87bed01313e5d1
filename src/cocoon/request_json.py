"""The limits of an OpenAI request body's JSON, for every route that reads one.

Each exists because something past it would fail later, after work was done or
money recorded, as an error that is not the app's to read:

- **Nesting.** JSON nested deeper than `MAX_JSON_DEPTH` is refused: a real
  request nests 5 or 6 deep (a JSON schema in `response_format` a few more),
  and each level costs recursion in every decoder on the path (msgspec's own
  limit is near 1,000, and it fails with RecursionError).
- **Integers.** Every integer must fit in a signed 64-bit integer: msgpack,
  which carries the request to the worker, cannot encode more, and no
  sampling parameter needs it.
- **UTF-8.** The body must be valid UTF-8 (JSON's own rule); strings with
  lone surrogates are refused by the decoder.
- **Embedding dimensions** at most `MAX_DIMENSIONS`: a worker builds the
  vector it is asked for.

A problem is reported with the offending `param`; the routes turn it into a
4xx in the OpenAI error format.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The deepest nesting of arrays and objects in a body (the body itself is 1).
MAX_JSON_DEPTH = 64
# The integer range of every number in a body: a signed 64-bit integer.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
# The longest embedding vector an app may ask for (`dimensions`): OpenAI's largest
# model has 3,072; a worker asked for 2**63 would try to build such a vector.
MAX_DIMENSIONS = 16_384

NESTING_PROBLEM = f"request body is nested deeper than {MAX_JSON_DEPTH} levels"


def json_problem(value: object) -> tuple[str, str | None] | None:
    """What is wrong with a decoded body, and where (`param`): nested deeper than
    MAX_JSON_DEPTH, or an integer outside 64 bits. None if nothing is."""
    # Iterative: the check must not recurse on what it is checking the depth of.
    # Paths are spelled only for containers and integers: a body of long lists
    # of strings costs one isinstance per item.
    if not isinstance(value, dict | list):
        return None
    stack: list[tuple[dict[Any, Any] | list[Any], int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        pairs: Iterable[tuple[Any, Any]] = (
            item.items() if isinstance(item, dict) else enumerate(item)
        )
        for key, child in pairs:
            if isinstance(child, dict | list):
                if depth >= MAX_JSON_DEPTH:
                    return NESTING_PROBLEM, None
                stack.append((child, depth + 1, _path(path, key)))
            elif (
                isinstance(child, int)
                and not isinstance(child, bool)
                and not MIN_INT <= child <= MAX_INT
            ):
                param = _short(_path(path, key))
                return (
                    f"integer out of range at `{param}`: integers must fit in 64 bits "
                    f"({MIN_INT} to {MAX_INT})",
                    param,
                )
    return None


def _path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _short(path: str, limit: int = 80) -> str:
    """A param path as the app wrote it, cut short (keys are the app's own strings)."""
    return path if len(path) <= limit else path[: limit - 3] + "..."
