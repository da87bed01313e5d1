"""Wallet keys: 24-word TON mnemonics and key files.

TON's own derivation: PBKDF2-SHA512 of the words with the salt ``"TON default
seed"``, the first 32 bytes being the Ed25519 seed (no password). One key serves
every wallet version; the version decides the address (see :mod:`.wallet`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.crypto.keys import mnemonic_is_valid, mnemonic_new, mnemonic_to_private_key

from .wallet_base import WalletError

__all__ = ["key_from_mnemonic", "load_key_file", "new_mnemonic", "save_key_file"]


def new_mnemonic() -> list[str]:
    return [str(w) for w in mnemonic_new(24)]


def key_from_mnemonic(words: Sequence[str] | str) -> Ed25519PrivateKey:
    """The wallet key of a 24-word TON mnemonic (no password)."""
    ws = words.split() if isinstance(words, str) else list(words)
    if len(ws) != 24 or not mnemonic_is_valid(ws):
        raise WalletError("not a valid 24-word TON mnemonic")
    _pub, secret = mnemonic_to_private_key(ws)
    return Ed25519PrivateKey.from_private_bytes(bytes(secret)[:32])


def load_key_file(path: Path) -> Ed25519PrivateKey:
    """A key file holds a 24-word mnemonic, or the 32-byte Ed25519 seed as 64 hex digits."""
    text = path.read_text().strip()
    words = text.split()
    if len(words) == 24:
        return key_from_mnemonic(words)
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise WalletError(f"{path}: neither a 24-word mnemonic nor a 32-byte hex seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def save_key_file(path: Path, words: Sequence[str]) -> None:
    """Write a mnemonic key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(" ".join(words) + "\n")
