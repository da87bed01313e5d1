"""What a node accepts of a TDX quote, and the verifier that applies it.

:func:`check_tdx_quote` runs, in order (the first failure raises):

1. DCAP verification at ``now`` (:func:`cocoon.tee.dcap.verify_quote`):
   EvidenceError "malformed", "bad_signature", "collateral_expired", ...;
2. REPORTDATA equals the report data of the presented claims
   (EvidenceError "report_data_mismatch"): the quote is about *these* keys;
3. the TD is not in debug mode (PolicyError "debug_td"; dcap-qvl already
   refuses it in step 1 as EvidenceError "debug_td", this is the second
   lock): a debug TD's memory is readable by the host, so its attestation
   proves nothing. There is deliberately no policy switch to allow it;
4. the TCB status is allowed (PolicyError "tcb_not_allowed"), and for any
   status other than UpToDate each advisory id is explicitly allowed
   (PolicyError "advisory_not_allowed");
5. the image hash, SHA-256 over MRTD‖RTMR0..3, is allowed
   (PolicyError "measurement_not_allowed"), unless the policy pins none.

:class:`TdxVerifier` wraps this as an
:class:`~cocoon.tee.evidence.EvidenceVerifier`, to hand to
:func:`cocoon.tee.policy.verify_peer` through ``verifiers=``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import msgspec

from cocoon.tee.dcap import DcapResult, verify_quote
from cocoon.tee.errors import EvidenceError, PolicyError
from cocoon.tee.evidence import Evidence, Verdict

UP_TO_DATE = "UpToDate"

CollateralSource = Callable[[bytes, int], str]
"""(raw quote, now) → collateral JSON; e.g. ``CollateralCache.get``."""


class TdxPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which TDX quotes are acceptable once their signatures check out."""

    image_hashes: list[str] | None = None
    """Allowed image hashes (hex SHA-256 over MRTD‖RTMR0..3); None: any image."""
    tcb_statuses: list[str] = msgspec.field(default_factory=lambda: [UP_TO_DATE])
    """Allowed TCB statuses; anything besides UpToDate is an explicit opt-in."""
    allowed_advisories: list[str] = msgspec.field(default_factory=list)
    """Advisory ids accepted on a non-UpToDate TCB (e.g. "INTEL-SA-00837")."""


def check_tdx_quote(
    raw_quote: bytes,
    *,
    collateral: str,
    now: int,
    policy: TdxPolicy,
    expected_report_data: bytes | None,
    root_ca_der: bytes | None = None,
) -> DcapResult:
    """Verify a quote and apply ``policy``; return the DCAP result or raise (see module doc).

    ``expected_report_data`` None skips step 2 (a bare quote checked on the
    command line, with no claims to compare against).
    """
    result = verify_quote(raw_quote, collateral, now, root_ca_der=root_ca_der)
    report = result.quote.report
    if expected_report_data is not None and not hmac.compare_digest(
        report.report_data, expected_report_data
    ):
        raise EvidenceError(
            "report_data_mismatch",
            "quote REPORTDATA does not match the presented claims "
            f"(quote {report.report_data.hex()[:16]}…, claims {expected_report_data.hex()[:16]}…)",
        )
    if report.debug:
        raise PolicyError("debug_td", "the TD runs in debug mode (TDATTRIBUTES.DEBUG set)")
    if result.status not in policy.tcb_statuses:
        raise PolicyError(
            "tcb_not_allowed",
            f"TCB status {result.status} not allowed (allowed: {', '.join(policy.tcb_statuses)})"
            + (f"; advisories {', '.join(result.advisory_ids)}" if result.advisory_ids else ""),
        )
    if result.status != UP_TO_DATE:
        missing = [a for a in result.advisory_ids if a not in policy.allowed_advisories]
        if missing:
            raise PolicyError(
                "advisory_not_allowed",
                f"TCB status {result.status} with advisories not allowed: {', '.join(missing)}",
            )
    if policy.image_hashes is not None and report.image_hash not in policy.image_hashes:
        raise PolicyError(
            "measurement_not_allowed", f"image hash {report.image_hash} is not allowed"
        )
    return result


def verdict_measurements(result: DcapResult) -> dict[str, str]:
    """Measurements and TCB facts as shown in verdicts and status outputs."""
    out = result.quote.report.measurements()
    out["tcb_status"] = result.status
    out["advisory_ids"] = ",".join(result.advisory_ids)
    out["debug"] = str(result.quote.report.debug).lower()
    return out


class TdxVerifier:
    """EvidenceVerifier for TDX quotes (``tdx``, or ``sim-tdx`` with the simulated root)."""

    def __init__(
        self,
        *,
        collateral: CollateralSource,
        policy: TdxPolicy | None = None,
        provider: str = "tdx",
        root_ca_der: bytes | None = None,
        trusted: bool = True,
    ) -> None:
        self.collateral = collateral
        self.policy = policy if policy is not None else TdxPolicy()
        self.provider = provider
        self.root_ca_der = root_ca_der
        self.trusted = trusted

    def verify(self, evidence: Evidence, expected_report_data: bytes, now: int) -> Verdict:
        if evidence.provider != self.provider:
            raise EvidenceError(
                "provider_mismatch",
                f"evidence from {evidence.provider!r} given to the {self.provider} verifier",
            )
        result = check_tdx_quote(
            evidence.quote,
            collateral=self.collateral(evidence.quote, now),
            now=now,
            policy=self.policy,
            expected_report_data=expected_report_data,
            root_ca_der=self.root_ca_der,
        )
        simulated = "simulated " if self.root_ca_der is not None else ""
        reason = f"{simulated}TDX quote verified ({result.status})"
        if not self.trusted:
            reason = f"{simulated}TDX quote verified ({result.status}) but not trusted here"
        return Verdict(
            trusted=self.trusted,
            provider=self.provider,
            reason=reason,
            measurements=verdict_measurements(result),
        )
