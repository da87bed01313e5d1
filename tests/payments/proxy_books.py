"""A proxy's ledger and book as the proxy opens them (role_payments.py), with a client's
channel and a worker's bound, for the tests of its journal of bills (a module of its
own: a killed writer process imports it too)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments.bill_journal import BillEntry, ProxyBook
from cocoon.payments.ledger import Ledger
from cocoon.payments.rows import Side

NETWORK = 7
CLIENT = "0:" + "c1" * 32
WORKER = "0:" + "a1" * 32
CLIENT_KEY = Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
PROXY_KEY = Ed25519PrivateKey.from_private_bytes(b"\x04" * 32)
DEPOSIT = 10**9


def open_book(root: Path) -> tuple[Ledger, ProxyBook]:
    ledger = Ledger(root / "ledger.sqlite")
    book = ProxyBook(
        ledger.db,
        ledger=ledger,
        journal=root / "expected.journal",
        bills_journal=root / "bills.journal",
        network_id=NETWORK,
        key=PROXY_KEY,
        commits=ledger.commits,
        receipts=lambda request_id, kept: kept or ledger.receipt(request_id),
    )
    # The client pays the proxy on one channel; the proxy pays the worker on another.
    sides: tuple[tuple[str, Side, Ed25519PrivateKey], ...] = (
        (CLIENT, "payee", CLIENT_KEY),
        (WORKER, "payer", PROXY_KEY),
    )
    for channel, side, payer in sides:
        if book.channel(channel) is None:
            public = payer.public_key().public_bytes_raw()
            book.bind(channel, side=side, peer=side, payer_key=public, deposit_nano=DEPOSIT)
    return ledger, book


def bill(request_id: str, amount: int, seq: int = 0) -> BillEntry:
    charge = (
        request_id,
        "ck",
        "wk",
        "m",
        10,
        0,
        amount,
        0,
        1000,
        amount,
        seq,
        1,
        b"R" + request_id.encode(),
        1.0,
    )
    return (charge, CLIENT, amount, WORKER, amount * 9 // 10)
