"""A payer book written in a loop by a child process that is killed with SIGKILL at a
random moment (fault injection for the book's transactions)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

_PAYER_LOOP = textwrap.dedent(
    """
    import random, sys
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cocoon.payments.book import PaymentBook

    path, channel, network, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    key_byte, cadence = bytes.fromhex(sys.argv[5]), sys.argv[6] == "cadence"
    key = Ed25519PrivateKey.from_private_bytes(key_byte * 32)
    book = PaymentBook(path, network_id=network, key=key)
    book.bind(channel, side="payer", peer="p",
              payer_key=key.public_key().public_bytes_raw(), deposit_nano=10**15)
    rng = random.Random(seed)
    amounts = {}
    i = 0
    while True:
        request = f"r{rng.randrange(50)}"
        seq, amount = amounts.get(request, (-1, 0))
        seq, amount = seq + 1, amount + rng.randrange(1, 10**6)
        if cadence:
            # Answers recorded one by one; a voucher for all of them now and then.
            recorded = book.incur(channel, request, amount, seq) is not None
            if rng.random() < 0.1:
                book.voucher(channel)
        else:
            recorded = book.pay(channel, request, amount, seq) is not None
        if recorded:
            amounts[request] = (seq, amount)
        i += 1
        if i == 200:
            print("paying", flush=True)
    """
)


def kill_payer_loop(
    path: Path, channel: str, network: int, seed: int, *, key_byte: int, cadence: bool
) -> None:
    """Run the loop (a voucher per answer, or on a cadence) and SIGKILL it at a random
    moment after its first 200 answers."""
    child = subprocess.Popen(
        [
            *(sys.executable, "-c", _PAYER_LOOP, str(path), channel, str(network), str(seed)),
            *(bytes([key_byte]).hex(), "cadence" if cadence else "each"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"paying\n"
        time.sleep(random.Random(seed).uniform(0.0, 0.3))  # a random moment
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def recorded_nano(path: Path, channel: str) -> int:
    """What the payer's book recorded as owed for the channel's requests."""
    db = sqlite3.connect(path)
    try:
        (total,) = db.execute(
            "SELECT SUM(amount_nano) FROM pay_requests WHERE channel = ?", (channel,)
        ).fetchone()
    finally:
        db.close()
    return int(total)
