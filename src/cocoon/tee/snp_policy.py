"""What a node accepts of an SEV-SNP report, and the verifier that applies it.

:func:`check_snp_report` runs, in order (the first failure raises):

1. the report parses (EvidenceError "malformed");
2. the VCEK is established through a pinned ARK at ``now``, and the CRL when
   given (EvidenceError "chain_invalid", :mod:`cocoon.tee.snp_certs`);
3. the report's ECDSA P-384 signature over bytes 0x000..0x29F verifies with
   the VCEK's key (EvidenceError "bad_signature");
4. the VCEK is the one of this report's chip and ``reported_tcb``
   (EvidenceError "chain_invalid"), and the CPUID of a v3+ report names the
   chain's product (EvidenceError "chain_invalid");
5. REPORT_DATA equals the report data of the presented claims
   (EvidenceError "report_data_mismatch");
6. the guest policy: no debug (PolicyError "debug_guest": the host can read a
   debug guest's memory, so its attestation proves nothing; nodes have
   deliberately no switch to allow it, only ``allow_debug`` of
   :func:`check_snp_report`, which `cocoon attest verify` offers for
   inspecting test and development reports), no migration agent unless allowed
   (PolicyError "migration_agent"), SMT only if allowed
   (PolicyError "smt_not_allowed");
7. every component of ``reported_tcb`` at least the policy's minimum
   (PolicyError "tcb_too_low");
8. the image hash (SHA-256 of the launch measurement, the same "image" notion
   as TDX's and the root contract's) and the launch measurement itself, when
   the policy pins them (PolicyError "measurement_not_allowed"), and the ID
   key digest when it pins those (PolicyError "id_key_not_allowed").

SNP evidence travels as :class:`SnpEvidence` (report, VCEK, optional chain);
:class:`SnpVerifier` wraps all this as an
:class:`~cocoon.tee.evidence.EvidenceVerifier`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate

from cocoon.tee.errors import EvidenceError, PolicyError
from cocoon.tee.evidence import Evidence, Verdict
from cocoon.tee.snp_certs import (
    Roots,
    VerifiedChain,
    check_vcek_binds,
    load_chain,
    verify_chain,
)
from cocoon.tee.snp_report import TCB_COMPONENTS, SnpReport, parse_snp_report, tcb_components


class SnpEvidence(msgspec.Struct, array_like=True, frozen=True):
    """What an SNP provider puts in :attr:`Evidence.quote`."""

    report: bytes
    """The raw attestation report (0x4A0 bytes)."""
    vcek: bytes
    """The VCEK certificate, DER, as AMD's key distribution service issues it."""
    chain: bytes = b""
    """ASK then ARK, PEM; empty: the verifier's pinned chain for the VCEK's issuer."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SnpEvidence)


def encode_snp_evidence(evidence: SnpEvidence) -> bytes:
    return _encoder.encode(evidence)


def decode_snp_evidence(quote: bytes) -> SnpEvidence:
    """Raise EvidenceError("malformed") unless ``quote`` is an encoded SnpEvidence."""
    try:
        return _decoder.decode(quote)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvidenceError("malformed", f"SEV-SNP evidence does not decode: {exc}") from None


class SnpPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which SEV-SNP reports are acceptable once their signatures check out."""

    image_hashes: list[str] | None = None
    """Allowed image hashes (hex SHA-256 of the launch measurement); None: any."""
    measurements: list[str] | None = None
    """Allowed launch measurements (96 hex digits, as sev-snp-measure prints); None: any."""
    id_key_digests: list[str] | None = None
    """Allowed ID key digests (96 hex) when an ID block is used; None: not checked."""
    min_tcb: dict[str, int] = msgspec.field(default_factory=dict)
    """Minimum patch level per component: bootloader, tee, snp, microcode, fmc (Turin)."""
    allow_smt: bool = True
    """Accept a platform with SMT on (sibling threads share a core with the host)."""
    allow_migration_agent: bool = False
    """Accept a guest that may be bound to a migration agent."""

    def __post_init__(self) -> None:
        unknown = set(self.min_tcb) - set(TCB_COMPONENTS)
        if unknown:
            raise ValueError(
                f"min_tcb: unknown components {sorted(unknown)}; known: {list(TCB_COMPONENTS)}"
            )


@dataclass(frozen=True)
class SnpResult:
    """A verified report and the chain that vouched for it."""

    report: SnpReport
    chain: VerifiedChain

    @property
    def product(self) -> str:
        return self.chain.product

    def measurements(self) -> dict[str, str]:
        return self.report.measurements(self.product)


def verify_report_signature(report: SnpReport, vcek_key: ec.EllipticCurvePublicKey) -> None:
    """ECDSA P-384/SHA-384 over the signed area; raise EvidenceError("bad_signature")."""
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        vcek_key.verify(signature, report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise EvidenceError(
            "bad_signature", "the report's signature does not verify with the VCEK"
        ) from None


def _lower(values: list[str] | None) -> set[str] | None:
    return None if values is None else {v.lower() for v in values}


def check_policy(
    report: SnpReport, product: str, policy: SnpPolicy, *, allow_debug: bool = False
) -> None:
    """Steps 6 to 8 of the module doc, on a report whose signature is established."""
    if report.debug and not allow_debug:
        raise PolicyError(
            "debug_guest",
            f"the report's signature and chain verified, but the guest allows debugging "
            f"(policy {report.policy:#x}): its host can read its memory",
        )
    if report.migration_agent and not policy.allow_migration_agent:
        raise PolicyError(
            "migration_agent", f"the guest may use a migration agent (policy {report.policy:#x})"
        )
    if report.smt_enabled and not policy.allow_smt:
        raise PolicyError("smt_not_allowed", "the platform runs with SMT enabled")
    levels = tcb_components(report.reported_tcb, product)
    low = [
        f"{name} {levels.get(name, 0)} < {minimum}"
        for name, minimum in policy.min_tcb.items()
        if levels.get(name, 0) < minimum
    ]
    if low:
        raise PolicyError("tcb_too_low", f"reported TCB below the minimum: {', '.join(low)}")
    images = _lower(policy.image_hashes)
    if images is not None and report.image_hash not in images:
        raise PolicyError(
            "measurement_not_allowed", f"image hash {report.image_hash} is not allowed"
        )
    allowed = _lower(policy.measurements)
    if allowed is not None and report.measurement.hex() not in allowed:
        raise PolicyError(
            "measurement_not_allowed",
            f"launch measurement {report.measurement.hex()} is not allowed",
        )
    id_keys = _lower(policy.id_key_digests)
    if id_keys is not None and report.id_key_digest.hex() not in id_keys:
        raise PolicyError(
            "id_key_not_allowed", f"ID key digest {report.id_key_digest.hex()} is not allowed"
        )


def check_snp_report(
    raw_report: bytes,
    *,
    vcek: bytes,
    chain: bytes | list[Certificate],
    now: int,
    policy: SnpPolicy,
    expected_report_data: bytes | None,
    roots: Roots,
    crl: bytes | None = None,
    allow_debug: bool = False,
) -> SnpResult:
    """Verify a report and apply ``policy``; return the result or raise (see module doc).

    ``chain`` is PEM/DER bytes (empty: the pinned ASK) or certificates;
    ``expected_report_data`` None skips step 5 (a bare report on the command line);
    ``allow_debug`` accepts a debug guest, for inspecting a test report by hand only
    (no node passes it: :class:`SnpVerifier` has no such switch).
    """
    report = parse_snp_report(raw_report)
    certs = chain if isinstance(chain, list) else (load_chain(chain) if chain else [])
    verified = verify_chain(vcek, certs, now, roots, crl=crl)
    verify_report_signature(report, verified.vcek.public_key)
    check_vcek_binds(verified, None if report.mask_chip_id else report.chip_id, report.reported_tcb)
    if report.product is not None and report.product != verified.product:
        raise EvidenceError(
            "chain_invalid", f"a {report.product} report under the {verified.product} chain"
        )
    if expected_report_data is not None and not hmac.compare_digest(
        report.report_data, expected_report_data
    ):
        raise EvidenceError(
            "report_data_mismatch",
            "REPORT_DATA does not match the presented claims "
            f"(report {report.report_data.hex()[:16]}…, claims {expected_report_data.hex()[:16]}…)",
        )
    check_policy(report, verified.product, policy, allow_debug=allow_debug)
    return SnpResult(report=report, chain=verified)


class SnpVerifier:
    """EvidenceVerifier for SEV-SNP (``sev-snp`` with AMD's roots, ``sim-snp`` with the sim's)."""

    def __init__(
        self,
        *,
        roots: Roots | Callable[[], Roots],
        policy: SnpPolicy | None = None,
        provider: str = "sev-snp",
        crl: bytes | None = None,
        trusted: bool = True,
        simulated: bool = False,
    ) -> None:
        # A callable is asked at the first verification: the simulated PKI's
        # keys cost a moment to derive, and most simulated nodes never meet SNP.
        self._roots = roots
        self.policy = policy if policy is not None else SnpPolicy()
        self.provider = provider
        self.crl = crl
        self.trusted = trusted
        self.simulated = simulated

    @property
    def roots(self) -> Roots:
        if callable(self._roots):
            self._roots = self._roots()
        return self._roots

    def verify(self, evidence: Evidence, expected_report_data: bytes, now: int) -> Verdict:
        if evidence.provider != self.provider:
            raise EvidenceError(
                "provider_mismatch",
                f"evidence from {evidence.provider!r} given to the {self.provider} verifier",
            )
        bundle = decode_snp_evidence(evidence.quote)
        result = check_snp_report(
            bundle.report,
            vcek=bundle.vcek,
            chain=bundle.chain,
            now=now,
            policy=self.policy,
            expected_report_data=expected_report_data,
            roots=self.roots,
            crl=self.crl,
        )
        simulated = "simulated " if self.simulated else ""
        reason = f"{simulated}SEV-SNP report verified ({result.product})"
        if not self.trusted:
            reason += " but not trusted here"
        return Verdict(
            trusted=self.trusted,
            provider=self.provider,
            reason=reason,
            measurements=result.measurements(),
        )
