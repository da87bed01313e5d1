"""DCAP verification of TDX quotes with ``dcap-qvl``, offline, at a given time.

:func:`verify_quote` checks a quote against its *collateral* (Intel's TCB
info, QE identity, CRLs and their issuer chains) as of ``now``: the PCK chain
up to the root CA (Intel's, or a given one for the simulated PKI), the QE
report, the attestation key's signature over header and TD report, and the
TCB level of the platform. What it returns is the TCB status and advisories;
what is *acceptable* is for :mod:`cocoon.tee.tdx_policy` to say.

Collateral is JSON in the form ``dcap_qvl.QuoteCollateralV3.from_json``
reads. :class:`CollateralCache` keeps it on disk per (FMSPC, CA) so that a
node verifies offline; a ``fetch`` hook (e.g. :func:`pccs_fetcher`) is called
only when the cache has nothing usable.

Errors are :class:`~cocoon.tee.errors.EvidenceError` with reasons
``malformed``, ``bad_signature``, ``collateral_expired``,
``collateral_not_yet_valid``, ``collateral_invalid``, ``revoked``, ``debug_td``
(dcap-qvl itself refuses debug TDs), ``collateral_unavailable`` or
``verification_failed``.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dcap_qvl

from cocoon.tee.errors import EvidenceError
from cocoon.tee.tdx_quote import TdxQuote, parse_tdx_quote

CollateralFetcher = Callable[[bytes], str]
"""Given a raw quote, return collateral JSON for it (e.g. from a PCCS)."""


@dataclass(frozen=True)
class DcapResult:
    """What DCAP verification established about a quote."""

    status: str
    """TCB status: "UpToDate", "SWHardeningNeeded", "OutOfDate", ..."""
    advisory_ids: list[str]
    quote: TdxQuote
    extra: dict[str, str] = field(default_factory=dict)


def load_collateral(text: str) -> dcap_qvl.QuoteCollateralV3:
    """Parse collateral JSON; raise EvidenceError("collateral_invalid")."""
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except (ValueError, TypeError) as exc:
        raise EvidenceError("collateral_invalid", f"collateral does not parse: {exc}") from None


# dcap-qvl reports every failure as ValueError("Verification failed: ...");
# these fragments of its messages map to our reasons (checked against 0.7).
_REASONS: tuple[tuple[str, str], ...] = (
    ("Debug mode", "debug_td"),
    ("Expired", "collateral_expired"),
    ("expired", "collateral_expired"),
    ("NotYetValid", "collateral_not_yet_valid"),
    ("in the future", "collateral_not_yet_valid"),
    ("Revoked", "revoked"),
    ("revoked", "revoked"),
    ("signature", "bad_signature"),
    ("Signature", "bad_signature"),
    ("hash mismatch", "bad_signature"),
    ("QE report", "bad_signature"),
)


def _reason_for(message: str) -> str:
    for fragment, reason in _REASONS:
        if fragment in message:
            return reason
    return "verification_failed"


def verify_quote(
    raw_quote: bytes,
    collateral: str | dcap_qvl.QuoteCollateralV3,
    now: int,
    *,
    root_ca_der: bytes | None = None,
) -> DcapResult:
    """Verify ``raw_quote`` against ``collateral`` at unix time ``now``.

    ``root_ca_der`` replaces Intel's SGX root CA (for the simulated PKI).
    Parses with :func:`parse_tdx_quote` first, so malformed input is refused
    before it reaches the native library.
    """
    quote = parse_tdx_quote(raw_quote)
    coll = load_collateral(collateral) if isinstance(collateral, str) else collateral
    try:
        if root_ca_der is None:
            report = dcap_qvl.verify(bytes(raw_quote), coll, int(now))
        else:
            report = dcap_qvl.verify_with_root_ca(bytes(raw_quote), coll, root_ca_der, int(now))
    except (ValueError, TypeError, OverflowError) as exc:
        message = str(exc).removeprefix("Verification failed: ")
        raise EvidenceError(_reason_for(message), f"DCAP verification failed: {message}") from None
    return DcapResult(
        status=str(report.status), advisory_ids=[str(a) for a in report.advisory_ids], quote=quote
    )


def _collateral_expiry(text: str) -> int | None:
    """The earliest nextUpdate of TCB info and QE identity (unix seconds), if readable."""
    try:
        doc = json.loads(text)
        times = []
        for key in ("tcb_info", "qe_identity"):
            inner = json.loads(doc[key])
            stamp = str(inner["nextUpdate"]).replace("Z", "+00:00")
            times.append(int(datetime.datetime.fromisoformat(stamp).timestamp()))
        return min(times)
    except (ValueError, KeyError, TypeError):
        return None


class CollateralCache:
    """Collateral on disk, one JSON file per (FMSPC, CA); fetched only on a miss.

    ``get(raw_quote, now)`` returns cached collateral unless it is past its
    ``nextUpdate``, in which case (or when absent) it calls ``fetch`` and
    stores the result. Without ``fetch`` a stale entry is still returned:
    verification then fails with a precise "collateral_expired" rather than
    "unavailable", and offline nodes keep working until it really lapses.
    """

    def __init__(self, directory: Path, fetch: CollateralFetcher | None = None) -> None:
        self.directory = Path(directory)
        self.fetch = fetch

    def path_for(self, raw_quote: bytes) -> Path:
        """Where the collateral of this quote's platform (FMSPC and PCK CA) is kept."""
        parse_tdx_quote(raw_quote)  # EvidenceError("malformed") before the native parser
        try:
            parsed = dcap_qvl.parse_quote(bytes(raw_quote))
            key = f"{parsed.fmspc()}-{parsed.ca()}"
        except ValueError as exc:
            raise EvidenceError("malformed", f"quote names no platform: {exc}") from None
        if not key.replace("-", "").isalnum():
            raise EvidenceError("malformed", f"odd platform id {key!r}")
        return self.directory / f"collateral-{key}.json"

    def put(self, raw_quote: bytes, text: str) -> Path:
        load_collateral(text)  # refuse to cache garbage
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(raw_quote)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def get(self, raw_quote: bytes, now: int) -> str:
        path = self.path_for(raw_quote)
        cached: str | None = None
        try:
            cached = path.read_text()
        except OSError:
            cached = None
        if cached is not None:
            expiry = _collateral_expiry(cached)
            if expiry is None or now < expiry or self.fetch is None:
                return cached
        if self.fetch is None:
            raise EvidenceError(
                "collateral_unavailable", "no cached collateral for this platform and no PCCS"
            )
        try:
            text = self.fetch(raw_quote)
        except (OSError, ValueError, RuntimeError) as exc:
            if cached is not None:
                return cached
            raise EvidenceError(
                "collateral_unavailable", f"collateral fetch failed: {exc}"
            ) from None
        self.put(raw_quote, text)
        return text


def pccs_fetcher(pccs_url: str) -> CollateralFetcher:
    """A fetch hook that asks a PCCS (or Intel PCS) for a quote's collateral.

    Network I/O: never used by tests; a node calls it only on a cache miss.
    """

    def fetch(raw_quote: bytes) -> str:
        import asyncio

        collateral = asyncio.run(dcap_qvl.get_collateral(pccs_url, bytes(raw_quote)))
        return str(collateral.to_json())

    return fetch
