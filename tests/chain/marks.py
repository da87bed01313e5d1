"""The local-chain mark for one test, where the others of its module need no chain (a
module whose tests all need one says ``pytestmark = NEEDS_LOCAL_CHAIN``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from harness.chain import NEEDS_LOCAL_CHAIN

F = TypeVar("F", bound=Callable[..., Any])


def needs_local_chain(f: F) -> F:
    for mark in NEEDS_LOCAL_CHAIN:
        f = mark(f)
    return f
