"""Bounds on the JSON schemas of a request (tools' parameters, `response_format`).
Sans-IO.

A worker on the built-in engine turns each schema into a grammar
(worker/backends/grammars.py, through llama.cpp's converter), and the grammar
grows with what the schema counts, not with its size in bytes: a string of
`maxLength` n becomes n copies of a character rule (8 bytes each; `maxLength:
10**9` asks the worker for 8 GB), as do `minItems`/`maxItems` and a pattern's
`{n}`. So the gateway refuses, with a 400 naming the schema, before anything is
sealed:

- more than `MAX_SCHEMA_NODES` JSON values in all schemas of a request
  together (OpenAI allows 5,000 object properties in one schema);
- a schema nested deeper than `MAX_SCHEMA_DEPTH` arrays and objects (OpenAI
  allows 10 levels of objects, each two deep here: a schema and its
  `properties`);
- repetition counts (`minLength`, `maxItems`, ..., and the numbers in a
  `pattern`'s `{n,m}`) that add up to more than `MAX_SCHEMA_REPEAT` over the
  request (at the bound a grammar is under a megabyte);
- a `pattern` longer than `MAX_PATTERN_CHARS`.
"""

from __future__ import annotations

import re
from typing import Any

MAX_SCHEMA_NODES = 10_000
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_REPEAT = 10_000
MAX_PATTERN_CHARS = 1_000

# Keywords whose number the converter writes out as that many copies of a rule.
_REPEAT_KEYWORDS = frozenset(
    {
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minContains",
        "maxContains",
    }
)
_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


class SchemaTooLarge(ValueError):
    """A schema past one of the bounds; the message says which."""


class SchemaBudget:
    """What the schemas of one request have used of the bounds so far."""

    def __init__(self) -> None:
        self.nodes = 0
        self.repeat = 0

    def check(self, schema: object) -> None:
        """Count one schema against the request's bounds; SchemaTooLarge past one."""
        # Iterative: a schema is the app's, and the depth check must not recurse on it.
        stack: list[tuple[object, int]] = [(schema, 1)]
        while stack:
            value, depth = stack.pop()
            self.nodes += 1
            if self.nodes > MAX_SCHEMA_NODES:
                raise SchemaTooLarge(
                    f"the request's JSON schemas have more than {MAX_SCHEMA_NODES} values"
                )
            if isinstance(value, dict):
                children: list[Any] = list(value.values())
                self._keywords(value)
            elif isinstance(value, list):
                children = value
            else:
                continue
            if children and depth >= MAX_SCHEMA_DEPTH:
                raise SchemaTooLarge(f"a JSON schema is nested deeper than {MAX_SCHEMA_DEPTH}")
            stack.extend((child, depth + 1) for child in children)

    def _keywords(self, schema: dict[Any, Any]) -> None:
        for key in _REPEAT_KEYWORDS.intersection(schema):
            count = schema[key]
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                self._add(count)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            if len(pattern) > MAX_PATTERN_CHARS:
                raise SchemaTooLarge(f"a pattern is longer than {MAX_PATTERN_CHARS} characters")
            for low, high in _QUANTIFIER.findall(pattern):
                self._add(max(int(low or 0), int(high or 0)))

    def _add(self, count: int) -> None:
        self.repeat += count
        if self.repeat > MAX_SCHEMA_REPEAT:
            raise SchemaTooLarge(
                "the request's JSON schemas repeat more than "
                f"{MAX_SCHEMA_REPEAT} items in all (minLength, maxItems, a pattern's {{n}}, ...)"
            )
