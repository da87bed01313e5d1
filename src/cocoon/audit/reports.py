"""Signed reports of failed audits (DESIGN §11).

A client whose audit of an answer failed signs a report: the audited
answer's receipt, the auditor's receipt, the scores and the verdict's numbers,
the reporter's key and what the reporter paid that worker. Anyone can check
that both receipts are genuine and that the reporter signed the report; what a
report is worth to a reader is what its reporter paid (`paid_nano`, bounded by
what the reader saw it pay), so that clients which paid nothing cannot smear
a worker. The plaintext of the prompt and answer is never in a report.
"""

from __future__ import annotations

import os
import time

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.errors import CryptoError, SignatureError
from ..crypto.receipts import Receipt, verify_receipt
from ..crypto.signing import sign, verify

DOMAIN_REPORT = b"cocoon/report/v1"
# Reports older than this are not taken (a reader keeps the nonces of younger ones).
MAX_AGE_S = 24 * 3600


class ReportError(ValueError):
    """A report that does not decode, verify or hold together."""


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What a reporter says of one audited answer."""

    network: str
    nonce: bytes  # 16 random bytes: one report, once
    created: int  # unix seconds
    worker_key: bytes  # the audited worker's raw Ed25519 key
    audited_receipt: bytes  # its signed final receipt for the answer
    auditor_receipt: bytes  # the auditor's signed receipt for the scoring
    scores: bytes  # the auditor's packed scores (cocoon.audit.scores)
    reason: str  # the verdict ("not_greedy", "outside_support", "implausible")
    top1: float
    in_support: float
    mean_logprob: float
    # The audited request's sampling: what the verdict held the scores against.
    sampling: dict[str, float | int | None]
    reporter_key: bytes
    paid_nano: int  # what the reporter paid the audited worker, in all


class SignedReport(msgspec.Struct, frozen=True, array_like=True):
    body: bytes
    signature: bytes


_encoder = msgspec.msgpack.Encoder()
_signed = msgspec.msgpack.Decoder(SignedReport)
_report = msgspec.msgpack.Decoder(Report)


def new_nonce() -> bytes:
    return os.urandom(16)


def sign_report(key: Ed25519PrivateKey, report: Report) -> bytes:
    body = _encoder.encode(report)
    return _encoder.encode(SignedReport(body, sign(key, DOMAIN_REPORT, report.network, body)))


def verify_report(data: bytes, network: str, now: float | None = None) -> Report:
    """Decode and check a report (its signature, both receipts, its age); ReportError."""
    try:
        signed = _signed.decode(data)
        report = _report.decode(signed.body)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise ReportError(f"malformed report: {exc}") from exc
    if report.network != network:
        raise ReportError(f"report is for network {report.network!r}")
    try:
        verify(report.reporter_key, DOMAIN_REPORT, network, signed.body, signed.signature)
    except SignatureError as exc:
        raise ReportError("bad report signature") from exc
    now = time.time() if now is None else now
    if not now - MAX_AGE_S <= report.created <= now + 300:
        raise ReportError("report is too old or from the future")
    if report.paid_nano < 0 or len(report.nonce) != 16:
        raise ReportError("malformed report fields")
    audited, auditor = receipts_of(report)
    if audited.worker_key != report.worker_key:
        raise ReportError("the audited receipt is not the reported worker's")
    if auditor.worker_key == report.worker_key:
        raise ReportError("a worker cannot audit itself")
    return report


def receipts_of(report: Report) -> tuple[Receipt, Receipt]:
    """The audited answer's receipt and the auditor's, verified; ReportError."""
    try:
        audited = verify_receipt(report.audited_receipt, report.network)
        auditor = verify_receipt(report.auditor_receipt, report.network)
    except CryptoError as exc:
        raise ReportError(f"a receipt in the report does not verify: {exc}") from exc
    if not audited.final or not auditor.final:
        raise ReportError("a report carries final receipts only")
    return audited, auditor


def report_json(report: Report) -> dict[str, object]:
    """A report for status pages (scores and receipts left out)."""
    return {
        "worker": report.worker_key.hex(),
        "reporter": report.reporter_key.hex(),
        "reason": report.reason,
        "top1": round(report.top1, 3),
        "in_support": round(report.in_support, 3),
        "mean_logprob": round(report.mean_logprob, 3),
        "paid_nano": report.paid_nano,
        "created": report.created,
    }
