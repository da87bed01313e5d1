"""Offline verification of an evidence bundle, as `cocoon verify` runs it.

In order (the first failure raises BundleError with its reason):

1. the file is a bundle of a known format ("malformed", "unknown_format");
2. the receipt's two signatures (body and cell) by the key it names, on the
   bundle's network ("bad_receipt"), for the bundle's request and model
   ("receipt_mismatch");
3. the worker certificate parses, is self-signed by the receipt's signer, and
   claims role worker on that network ("bad_certificate", "wrong_worker",
   "claims_mismatch"); the model is one its attested claims name, when they
   name any ("model_not_attested");
4. the quote is the certificate's ("quote_mismatch"), the collateral is what its
   hash says ("collateral_mismatch"), the certificate was valid when the
   receipt was signed ("certificate_not_valid");
5. the quote verifies at that time, binds the certificate's claims, and passes
   the default policy of its kind. TDX: by DCAP against the collateral, TCB
   UpToDate, no debug TD. SEV-SNP (`evidence.snp`): the report's signature by
   the VCEK, VCEK <- ASK <- ARK with the bundle's chain (and CRL, if any), the
   VCEK of the report's chip and TCB, no debug guest, no migration agent.
   Roots are this program's: Intel's and AMD's real ones for "tdx" and
   "sev-snp"; for "sim-tdx" and "sim-snp" the simulated roots it derives
   itself (never a root the bundle brings), labelled simulated. "none" is
   refused unless untrusted evidence is allowed; with `require_hardware`,
   only "tdx" and "sev-snp" pass (other reasons are the verifier's own:
   bad_signature, chain_invalid, report_data_mismatch, tcb_not_allowed,
   debug_guest, ...);
6. the image hash is one of `images`, when given ("image_not_allowed");
7. the amount is what the price list makes of the receipt ("price_mismatch").

Time is the receipt's (when the answer was served), or `at`: a bundle checked
a month later still shows what was true when the answer came.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..crypto.errors import CryptoError
from ..crypto.receipts import Receipt, verify_receipt
from ..pricing import price_nano
from ..tee.certs import parse_certificate
from ..tee.claims import report_data
from ..tee.errors import AttestationError
from ..tee.evidence import (
    SIMULATED_PROVIDERS,
    EvidenceVerifier,
    NoneVerifier,
    Verdict,
    tee_kind,
)
from ..tee.sim_tdx import SIM_TDX_PROVIDER, shared_pki
from ..tee.tdx_policy import TdxVerifier
from .bundle import FORMAT, EvidenceBundle, decode_bundle
from .errors import BundleError
from .snp import SNP_PROVIDERS, BundleSnpVerifier

# As the peer policy's: clocks of the worker and of the chain differ a little.
CLOCK_SKEW_S = 300


@dataclass(frozen=True)
class VerifiedAnswer:
    """What a bundle proves about one answer."""

    bundle: EvidenceBundle
    receipt: Receipt
    worker_key_id: str
    verdict: Verdict
    at: int
    simulated: bool
    amount_nano: int | None
    warnings: list[str] = field(default_factory=list)

    def tcb(self) -> dict[str, int]:
        """SEV-SNP: the reported TCB by component; {} for other kinds (TDX's is a status)."""
        if tee_kind(self.verdict.provider) != "sev-snp":
            return {}
        return {
            name.removeprefix("tcb_"): int(level)
            for name, level in self.verdict.measurements.items()
            if name.startswith("tcb_")
        }

    def summary(self) -> dict[str, Any]:
        r = self.receipt
        price = self.bundle.price
        measurements = self.verdict.measurements
        return {
            "verified": True,
            "request_id": r.request_id,
            "network": r.network,
            "model": r.model,
            "worker": self.worker_key_id,
            "provider": self.verdict.provider,
            "tee": tee_kind(self.verdict.provider),
            "simulated": self.simulated,
            "attestation": self.verdict.reason,
            "image_hash": measurements.get("image_hash"),
            "tcb_status": measurements.get("tcb_status"),
            "tcb": self.tcb(),
            "product": measurements.get("product"),
            "launch_measurement": measurements.get("measurement"),
            "measurements": measurements,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "final": r.final,
            "served_at": self.at,
            "amount_nano": self.amount_nano,
            "channel": price.channel if price is not None else None,
            "collateral": self.bundle.collateral.reference,
            "warnings": self.warnings,
        }


def load_bundle(data: bytes) -> EvidenceBundle:
    try:
        bundle = decode_bundle(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BundleError("malformed", f"not an evidence bundle: {exc}") from None
    if bundle.format != FORMAT:
        raise BundleError("unknown_format", f"format {bundle.format!r}, this reads {FORMAT!r}")
    return bundle


def verify_bundle(
    data: bytes,
    *,
    at: int | None = None,
    allow_untrusted: bool = False,
    require_hardware: bool = False,
    images: Sequence[str] = (),
) -> VerifiedAnswer:
    """Check a bundle (module docstring); what it proves, or BundleError."""
    bundle = load_bundle(data)
    receipt = _receipt(bundle)
    now = receipt.finished_ms // 1000 if at is None else at
    try:
        cert = parse_certificate(bundle.worker_certificate)
    except AttestationError as exc:
        raise BundleError("bad_certificate", f"worker certificate: {exc}") from None
    if cert.public_key != receipt.worker_key:
        raise BundleError("wrong_worker", "the receipt is not signed by the certificate's key")
    claims = cert.claims
    if claims.role != "worker" or claims.network != bundle.network:
        raise BundleError(
            "claims_mismatch",
            f"the certificate claims role {claims.role!r} on network {claims.network!r}",
        )
    if claims.models and receipt.model not in claims.models:
        raise BundleError(
            "model_not_attested", f"the worker's attested claims do not name {receipt.model}"
        )
    if not hmac.compare_digest(bundle.quote, cert.evidence.quote):
        raise BundleError("quote_mismatch", "the quote is not the one in the certificate")
    collateral = bundle.collateral
    digest = hashlib.sha256(collateral.document.encode()).hexdigest()
    if collateral.provider != cert.evidence.provider or digest != collateral.sha256:
        raise BundleError("collateral_mismatch", "the collateral is not what its reference says")
    if not cert.not_before - CLOCK_SKEW_S <= now <= cert.not_after + CLOCK_SKEW_S:
        raise BundleError(
            "certificate_not_valid",
            f"the worker certificate was not valid at {now} "
            f"(valid {cert.not_before}..{cert.not_after})",
        )
    provider = cert.evidence.provider
    if require_hardware and (tee_kind(provider) == "none" or provider in SIMULATED_PROVIDERS):
        raise BundleError(
            "not_hardware",
            f"the evidence is from provider {provider}, not a TDX or SEV-SNP machine",
        )
    try:
        verdict = _verifier(bundle).verify(cert.evidence, report_data(claims), now)
    except AttestationError as exc:
        raise BundleError(exc.reason, f"attestation: {exc}") from None
    if provider == "none" and not allow_untrusted:
        raise BundleError("untrusted_provider", f"{verdict.reason}: the worker is not attested")
    image = verdict.measurements.get("image_hash", "")
    if images and image.lower() not in {i.lower() for i in images}:
        raise BundleError("image_not_allowed", f"image hash {image or '(none)'} is not allowed")
    amount = _amount(bundle, receipt)
    warnings = []
    if not receipt.final:
        warnings.append("the receipt is partial: the answer was cut short")
    return VerifiedAnswer(
        bundle=bundle,
        receipt=receipt,
        worker_key_id=cert.key_id,
        verdict=verdict,
        at=now,
        simulated=provider in SIMULATED_PROVIDERS,
        amount_nano=amount,
        warnings=warnings,
    )


def _receipt(bundle: EvidenceBundle) -> Receipt:
    try:
        # Offline, where time does not count: both signatures, as the worker made them.
        receipt = verify_receipt(bundle.receipt, bundle.network, body_signature=True)
    except CryptoError as exc:
        raise BundleError("bad_receipt", f"receipt: {exc}") from None
    if receipt.request_id != bundle.request_id or receipt.model != bundle.model:
        raise BundleError(
            "receipt_mismatch",
            f"the receipt is for request {receipt.request_id} and model {receipt.model}",
        )
    return receipt


def _verifier(bundle: EvidenceBundle) -> EvidenceVerifier:
    document = bundle.collateral.document
    provider = bundle.collateral.provider
    if provider == SIM_TDX_PROVIDER:
        # The simulated root is derived here, never taken from the bundle.
        return TdxVerifier(
            collateral=lambda raw, now: document,
            provider=SIM_TDX_PROVIDER,
            root_ca_der=shared_pki().root_ca_der,
            trusted=True,  # labelled simulated by the caller (VerifiedAnswer.simulated)
        )
    if provider == "tdx":
        return TdxVerifier(collateral=lambda raw, now: document, provider="tdx")
    if provider in SNP_PROVIDERS:
        return BundleSnpVerifier(bundle)
    if provider == "none":
        return NoneVerifier()
    raise BundleError("unknown_provider", f"cannot verify evidence from provider {provider!r}")


def _amount(bundle: EvidenceBundle, receipt: Receipt) -> int | None:
    price = bundle.price
    if price is None:
        return None
    expected = price_nano(
        price.prices,
        prompt_tokens=receipt.prompt_tokens,
        cached_prompt_tokens=receipt.cached_prompt_tokens,
        completion_tokens=receipt.completion_tokens,
        reasoning_tokens=receipt.reasoning_tokens,
        coefficient_milli=receipt.coefficient_milli,
    )
    if expected != price.amount_nano:
        raise BundleError(
            "price_mismatch",
            f"the bundle states {price.amount_nano} nanotons; its price list makes the "
            f"receipt {expected}",
        )
    return expected
