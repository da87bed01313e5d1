"""The owner's and verifiers' messages to the root contract, as message bodies:
parameters, hashes, proxies, owner, verifier, slashing, verdicts and their cancellation."""

from __future__ import annotations

import re
from typing import Any

from pytoniq_core.boc import Builder, Cell

from .channel import parse_address, raw_address
from .root_cells import (
    RegisteredProxy,
    RootOp,
    RootParams,
    RootSlashing,
    market_cell,
    params_cell,
    proxy_entry_cell,
)


def _head(op: int, query_id: int) -> Any:
    return Builder().store_uint(op, 32).store_uint(query_id, 64)


def set_params_body(params: RootParams, query_id: int = 0) -> Cell:
    """The owner's ``SetParams``: every param, the market's included, in one update."""
    b = _head(RootOp.SET_PARAMS, query_id).store_ref(params_cell(params))
    return b.store_ref(market_cell(params)).end_cell()


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def set_hash_body(kind: int, hash_hex: str, allowed: bool, query_id: int = 0) -> Cell:
    """The owner's ``SetHash``: allow (or remove) a 32-byte hash (64 hex digits) in the
    list of ``kind`` (:class:`HashKind`)."""
    if _HEX64.fullmatch(hash_hex) is None:
        raise ValueError(f"hash {hash_hex!r}: expected 64 hex digits")
    b = _head(RootOp.SET_HASH, query_id).store_uint(kind, 8).store_uint(int(hash_hex, 16), 256)
    return b.store_bit(1 if allowed else 0).end_cell()


def set_proxy_body(wallet: str, entry: RegisteredProxy | None, query_id: int = 0) -> Cell:
    """The owner's ``SetProxy``: register (or replace) ``entry`` for ``wallet``; None
    removes the proxy."""
    b = _head(RootOp.SET_PROXY, query_id).store_address(parse_address(wallet))
    if entry is None:
        return b.store_bit(0).end_cell()
    if raw_address(entry.wallet) != raw_address(wallet):
        raise ValueError(f"entry of {entry.wallet} given for wallet {wallet}")
    return b.store_bit(1).store_ref(proxy_entry_cell(entry)).end_cell()


def set_owner_body(new_owner: str, query_id: int = 0) -> Cell:
    """The owner's ``SetOwner``: hand the root over to ``new_owner``."""
    b = _head(RootOp.SET_OWNER, query_id).store_address(parse_address(new_owner))
    return b.end_cell()


def set_verifier_body(key: bytes, allowed: bool, query_id: int = 0) -> Cell:
    """The owner's ``SetVerifier``: list (or unlist) a verifier's 32-byte Ed25519 node key."""
    if len(key) != 32:
        raise ValueError(f"a verifier key is 32 bytes, not {len(key)}")
    b = _head(RootOp.SET_VERIFIER, query_id).store_bytes(key)
    return b.store_bit(1 if allowed else 0).end_cell()


def set_slashing_body(dispute_delay: int, quorum: int, query_id: int = 0) -> Cell:
    """The owner's ``SetSlashing``: the dispute window (at most the unbonding delay) and
    the verdict quorum (at least 2)."""
    RootSlashing(dispute_delay, quorum)  # range checks
    b = _head(RootOp.SET_SLASHING, query_id).store_uint(dispute_delay, 32)
    return b.store_uint(quorum, 8).end_cell()


def submit_verdict_body(
    verdict: Cell, signatures: list[tuple[bytes, bytes]], query_id: int = 0
) -> Cell:
    """Anyone's ``SubmitVerdict``: the verdict cell and a list of (verifier key, its
    signature of the cell's hash), as ``key:uint256 signature:bits512 next:Maybe ^…``."""
    if not signatures:
        raise ValueError("a verdict needs signatures")
    nxt: Cell | None = None
    for key, signature in reversed(signatures):
        if len(key) != 32 or len(signature) != 64:
            raise ValueError("a verifier signature is a 32-byte key and 64 bytes")
        nxt = Builder().store_bytes(key).store_bytes(signature).store_maybe_ref(nxt).end_cell()
    assert nxt is not None
    return _head(RootOp.SUBMIT_VERDICT, query_id).store_ref(verdict).store_ref(nxt).end_cell()


def cancel_slash_body(stake: str, nonce: int, query_id: int = 0) -> Cell:
    """The owner's ``CancelSlash``: cancel (uphold a dispute against) the slash pending on
    ``stake`` for the verdict with ``nonce``."""
    b = _head(RootOp.CANCEL_SLASH, query_id).store_address(parse_address(stake))
    return b.store_uint(nonce, 64).end_cell()
