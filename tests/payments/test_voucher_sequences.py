"""One payer book and one payee book exchanging vouchers over a lossy, reordering link.

The payer pays receipts (some repeated with higher or lower receipt seqs); its
vouchers reach the payee late, twice, out of order or never. The payee must
end up with exactly what the payer signed, never more, never above the
deposit, and refuse every replay or forgery without writing anything.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cocoon.payments.book import ChannelRow, PaymentBook
from cocoon.payments.errors import (
    BadVoucherSignature,
    LedgerError,
    VoucherError,
    VoucherNotNewer,
    WrongVoucherNetwork,
)
from cocoon.payments.vouchers import MAX_SEQNO, MAX_TOTAL, SignedVoucher, Voucher, sign_voucher
from cocoon.payments.vouchers import verify_voucher as verify

NETWORK = -3
CHANNEL = "0:" + "5a" * 32
OTHER_CHANNEL = "0:" + "a5" * 32
PAYER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
PAYER_PUB = PAYER_KEY.public_key().public_bytes_raw()
STRANGER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)

requests = st.sampled_from([f"r{i}" for i in range(6)])
receipt_seqs = st.integers(0, 5)
amounts = st.integers(0, 3_000)


def dump(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return (
            db.execute("SELECT * FROM pay_channels").fetchall()
            + db.execute("SELECT * FROM pay_requests ORDER BY request_id").fetchall()
        )
    finally:
        db.close()


@dataclass(frozen=True)
class InFlight:
    signed: SignedVoucher
    request_id: str


class VoucherExchange(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="cocoon-vouchers-"))
        self.payer_path = self.dir / "payer.sqlite"
        self.payee_path = self.dir / "payee.sqlite"
        self.payer = PaymentBook(self.payer_path, network_id=NETWORK, key=PAYER_KEY)
        self.payee = PaymentBook(self.payee_path, network_id=NETWORK)
        self.deposit = 0
        self.paid: dict[str, tuple[int, int]] = {}  # request -> (receipt seq, amount)
        self.owed: dict[str, tuple[int, int]] = {}
        self.in_flight: list[InFlight] = []
        self.accepted: list[SignedVoucher] = []
        self.last_payee_total = 0

    @initialize(deposit=st.integers(0, 12_000))
    def bind(self, deposit: int) -> None:
        self.deposit = deposit
        self.payer.bind(
            CHANNEL, side="payer", peer="payee", payer_key=PAYER_PUB, deposit_nano=deposit
        )
        self.payee.bind(
            CHANNEL, side="payee", peer="payer", payer_key=PAYER_PUB, deposit_nano=deposit
        )

    def payer_row(self) -> ChannelRow:
        row = self.payer.channel(CHANNEL)
        assert row is not None
        return row

    def payee_row(self) -> ChannelRow:
        row = self.payee.channel(CHANNEL)
        assert row is not None
        return row

    # -- the payer ---------------------------------------------------------------------------

    @rule(request=requests, receipt_seq=receipt_seqs, amount=amounts)
    def pay(self, request: str, receipt_seq: int, amount: int) -> None:
        before = self.payer_row()
        seq, paid = self.paid.get(request, (-1, 0))
        if receipt_seq <= seq or amount <= paid:
            event("pay: nothing new")
            snapshot = dump(self.payer_path)
            assert self.payer.pay(CHANNEL, request, amount, receipt_seq) is None
            assert dump(self.payer_path) == snapshot
            return
        total = before.total_nano + amount - paid
        if total > self.deposit:
            event("pay: above the deposit")
            snapshot = dump(self.payer_path)
            with pytest.raises(LedgerError):
                self.payer.pay(CHANNEL, request, amount, receipt_seq)
            assert dump(self.payer_path) == snapshot
            return
        event("pay: signed")
        signed = self.payer.pay(CHANNEL, request, amount, receipt_seq)
        assert signed is not None
        assert (signed.voucher.seqno, signed.voucher.total_nano) == (before.seqno + 1, total)
        self.paid[request] = (receipt_seq, amount)
        self.in_flight.append(InFlight(signed, request))

    # -- the payee's receipts ----------------------------------------------------------------

    @rule(request=requests, receipt_seq=receipt_seqs, amount=amounts)
    def owe(self, request: str, receipt_seq: int, amount: int) -> None:
        seq, owed = self.owed.get(request, (-1, 0))
        grew = self.payee.owe(CHANNEL, request, amount, receipt_seq, receipt=b"receipt")
        if receipt_seq <= seq or amount < owed:
            assert grew == 0
        else:
            assert grew == amount - owed
            self.owed[request] = (receipt_seq, amount)

    # -- the link ----------------------------------------------------------------------------

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 1_000), keep=st.booleans())
    def deliver(self, pick: int, keep: bool) -> None:
        """Deliver any voucher in flight (reordering); keep a copy to deliver again
        (duplication)."""
        message = self.in_flight[pick % len(self.in_flight)]
        if not keep:
            self.in_flight.remove(message)
        self.offer(message.signed, message.request_id)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 1_000))
    def lose(self, pick: int) -> None:
        del self.in_flight[pick % len(self.in_flight)]

    @precondition(lambda self: self.accepted)
    @rule(pick=st.integers(0, 1_000))
    def replay(self, pick: int) -> None:
        self.offer(self.accepted[pick % len(self.accepted)], "r0")

    @rule(
        kind=st.sampled_from(["network", "channel", "key"]),
        seqno=st.integers(0, MAX_SEQNO),
        total=st.integers(0, 20_000),
    )
    def forge(self, kind: str, seqno: int, total: int) -> None:
        """Nothing signed for another network or channel, or by another key, is accepted."""
        if kind == "network":
            signed = sign_voucher(PAYER_KEY, Voucher(CHANNEL, seqno, total), NETWORK + 1)
            error: type[VoucherError] = WrongVoucherNetwork
        elif kind == "channel":
            other = sign_voucher(PAYER_KEY, Voucher(OTHER_CHANNEL, seqno, total), NETWORK)
            signed = SignedVoucher(Voucher(CHANNEL, seqno, total), NETWORK, other.signature)
            error = BadVoucherSignature
        else:
            signed = sign_voucher(STRANGER_KEY, Voucher(CHANNEL, seqno, total), NETWORK)
            error = BadVoucherSignature
        snapshot = dump(self.payee_path)
        with pytest.raises(error):
            self.payee.accept(signed, "r0")
        # Sent as is on the other channel, it is unknown to this payee.
        if kind == "channel":
            with pytest.raises(VoucherError, match="unknown channel"):
                self.payee.accept(other, "r0")
        assert dump(self.payee_path) == snapshot

    @rule()
    def deliver_latest(self) -> None:
        """The payer's latest voucher (what it resends on reconnect) settles everything."""
        latest = self.payer_row().latest(NETWORK)
        if latest is None:
            assert self.payee_row().total_nano == 0
            return
        self.offer(latest, "")
        payer, payee = self.payer_row(), self.payee_row()
        assert payee.total_nano == payer.total_nano == sum(a for _, a in self.paid.values())
        assert payee.seqno == payer.seqno
        assert payee.latest(NETWORK) == latest

    def offer(self, signed: SignedVoucher, request_id: str) -> None:
        before = self.payee_row()
        if signed.voucher.seqno <= before.seqno:
            event("accept: not newer")
            snapshot = dump(self.payee_path)
            with pytest.raises(VoucherNotNewer):
                self.payee.accept(signed, request_id)
            assert dump(self.payee_path) == snapshot
            return
        event("accept: accepted")
        added = self.payee.accept(signed, request_id)
        assert added == signed.voucher.total_nano - before.total_nano > 0
        self.accepted.append(signed)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def payee_never_ahead_never_back(self) -> None:
        if self.payee.channel(CHANNEL) is None:
            return  # before bind
        payer, payee = self.payer_row(), self.payee_row()
        assert payer.total_nano == sum(a for _, a in self.paid.values())
        assert payee.total_nano <= payer.total_nano <= self.deposit
        assert payee.seqno <= payer.seqno
        assert payee.total_nano >= self.last_payee_total
        self.last_payee_total = payee.total_nano
        assert payee.owed_nano == sum(a for _, a in self.owed.values())
        assert payee.unpaid_nano == max(0, payee.owed_nano - payee.total_nano)
        latest = payee.latest(NETWORK)
        if latest is not None:
            verify(latest, PAYER_PUB, network=NETWORK, channel=CHANNEL)
            assert latest.voucher.total_nano <= payee.deposit_nano

    def teardown(self) -> None:
        try:
            if self.payer.channel(CHANNEL) is not None:
                self.deliver_latest()
        finally:
            self.payer.close()
            self.payee.close()
            shutil.rmtree(self.dir, ignore_errors=True)


VoucherExchange.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestVoucherExchange = VoucherExchange.TestCase


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(["network", "channel", "key"]),
    seqno=st.integers(0, MAX_SEQNO),
    total=st.integers(0, MAX_TOTAL),
    accepted=st.integers(0, 3),
)
def test_forged_voucher_refused_whatever_its_seqno(
    kind: str, seqno: int, total: int, accepted: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="cocoon-forged-") as tmp:
        path = Path(tmp) / "payee.sqlite"
        payee = PaymentBook(path, network_id=NETWORK)
        try:
            payee.bind(CHANNEL, side="payee", peer="p", payer_key=PAYER_PUB, deposit_nano=10**18)
            for i in range(1, accepted + 1):
                payee.accept(sign_voucher(PAYER_KEY, Voucher(CHANNEL, i, i), NETWORK))
            if kind == "network":
                signed = sign_voucher(PAYER_KEY, Voucher(CHANNEL, seqno, total), NETWORK ^ 1)
            elif kind == "channel":
                other = sign_voucher(PAYER_KEY, Voucher(OTHER_CHANNEL, seqno, total), NETWORK)
                signed = SignedVoucher(Voucher(CHANNEL, seqno, total), NETWORK, other.signature)
            else:
                signed = sign_voucher(STRANGER_KEY, Voucher(CHANNEL, seqno, total), NETWORK)
            before = dump(path)
            with pytest.raises((WrongVoucherNetwork, BadVoucherSignature)):
                payee.accept(signed)
            assert dump(path) == before
        finally:
            payee.close()
