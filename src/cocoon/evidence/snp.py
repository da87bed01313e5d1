"""SEV-SNP evidence in a bundle: what a client puts in, and how `cocoon verify` checks it.

An SNP worker's quote (`tee.snp_policy.SnpEvidence`) already holds its report
and its chip's VCEK. The bundle adds what the report is checked against, as
`Collateral` with provider "sev-snp" or "sim-snp" and an `SnpCollateral`
document: the product, the ASK and ARK (the worker's own chain, or the pinned
one of the product when it brought none) and, when the client checks with one,
AMD's CRL and its SHA-256. The report and VCEK are repeated, unpacked, under
`snp` for readers.

Checking runs the nodes' own SNP code (`tee.snp_policy`, default policy: never
a debug guest) with the chain and CRL of the bundle, but against roots this
program holds: AMD's pinned ARKs for "sev-snp", and for "sim-snp" the simulated
ARK it derives itself. A bundle's ARK is only ever compared with those, never
trusted, so a forged chain is "chain_invalid" whatever it says.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..tee.errors import AttestationError
from ..tee.evidence import Evidence, Verdict
from ..tee.sim_snp import SIM_SNP_PROVIDER, shared_pki
from ..tee.snp_certs import Roots, load_chain, parse_vcek, read_crl_file
from ..tee.snp_policy import SnpEvidence, SnpVerifier, decode_snp_evidence, encode_snp_evidence
from ..tee.snp_roots import amd_roots
from .bundle import Collateral, EvidenceBundle, SnpParts, collateral_of
from .errors import BundleError

SNP_PROVIDERS = frozenset({"sev-snp", SIM_SNP_PROVIDER})


class SnpCollateral(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an SNP report is checked against, beyond its VCEK (the collateral document)."""

    product: str
    """The product whose ARK the chain ends in ("Milan", "Genoa", "Turin")."""
    ask_ark: str
    """The ASK then the ARK, PEM, as AMD's key distribution service serves them."""
    crl: bytes = b""
    """AMD's CRL for the product as the client checked with it (DER or PEM); empty: none."""
    crl_sha256: str = ""
    """Hex SHA-256 of `crl`: the reference a reader can compare with AMD's; "" for none."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SnpCollateral)


def _roots(provider: str) -> Roots:
    if provider == SIM_SNP_PROVIDER:
        # Derived here from the public seed, as every simulated node does: the
        # one root a sim-snp bundle may chain to, whatever ARK it brings.
        return shared_pki().roots
    return amd_roots()


def _pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _ark_key_id(ark: x509.Certificate) -> str:
    # The key, not the DER: a simulated ARK is re-signed (RSA-PSS) in each process.
    spki = ark.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()[:16]


def _evidence(quote: bytes) -> SnpEvidence:
    try:
        return decode_snp_evidence(quote)
    except AttestationError as exc:
        raise BundleError("malformed", f"SEV-SNP evidence: {exc}") from None


def read_crl(path: str) -> bytes | None:
    """The client's CRL file (`tee.snp_crl_file`), None when it keeps none."""
    try:
        return read_crl_file(path)
    except AttestationError as exc:
        raise BundleError("collateral_unavailable", str(exc)) from None


def snp_parts(quote: bytes) -> SnpParts:
    """The report and VCEK of an SNP quote, and the product its VCEK names."""
    evidence = _evidence(quote)
    try:
        product = parse_vcek(evidence.vcek).product_name.split("-")[0]
    except AttestationError as exc:
        raise BundleError("bad_certificate", f"SEV-SNP evidence: {exc}") from None
    return SnpParts(report=evidence.report, vcek=evidence.vcek, product=product)


def snp_collateral(provider: str, quote: bytes, crl: bytes | None) -> Collateral:
    """The chain (and CRL) an SNP quote is checked against, as bundle collateral."""
    evidence = _evidence(quote)
    product = snp_parts(quote).product
    try:
        chain = load_chain(evidence.chain) if evidence.chain else []
    except AttestationError as exc:
        raise BundleError("collateral_unavailable", f"the worker's chain: {exc}") from None
    if not chain:
        pinned = _roots(provider).get(product)
        if pinned is None:
            raise BundleError("collateral_unavailable", f"no pinned AMD roots for {product!r}")
        chain = list(pinned)
    document = SnpCollateral(
        product=product,
        ask_ark=_pem(chain),
        crl=crl or b"",
        crl_sha256=hashlib.sha256(crl).hexdigest() if crl else "",
    )
    simulated = "simulated " if provider == SIM_SNP_PROVIDER else "AMD "
    reference = f"{simulated}ARK-{product} key {_ark_key_id(chain[-1])}"
    if crl:
        reference += f", CRL sha256:{document.crl_sha256[:16]}"
    return collateral_of(provider, reference, _encoder.encode(document).decode())


class BundleSnpVerifier:
    """EvidenceVerifier for the SNP quote of one bundle, with the bundle's chain and CRL."""

    def __init__(self, bundle: EvidenceBundle) -> None:
        self.bundle = bundle
        self.provider = bundle.collateral.provider
        try:
            self.document = _decoder.decode(bundle.collateral.document)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BundleError("collateral_mismatch", f"SEV-SNP collateral: {exc}") from None
        crl_digest = hashlib.sha256(self.document.crl).hexdigest() if self.document.crl else ""
        if crl_digest != self.document.crl_sha256:
            raise BundleError("collateral_mismatch", "the CRL is not the one its hash names")

    def verify(self, evidence: Evidence, expected_report_data: bytes, now: int) -> Verdict:
        quoted = _evidence(evidence.quote)
        parts = self.bundle.snp
        if parts is not None and not (
            hmac.compare_digest(parts.report, quoted.report)
            and hmac.compare_digest(parts.vcek, quoted.vcek)
        ):
            raise BundleError("quote_mismatch", "the SNP report or VCEK is not the quote's")
        chain = self.document.ask_ark.encode()
        if quoted.chain and _ders(quoted.chain) != _ders(chain):
            raise BundleError("collateral_mismatch", "the chain is not the one the worker sent")
        verifier = SnpVerifier(
            roots=lambda: _roots(self.provider),
            provider=self.provider,
            crl=self.document.crl or None,
            trusted=True,  # labelled simulated by the caller (VerifiedAnswer.simulated)
            simulated=self.provider == SIM_SNP_PROVIDER,
        )
        with_chain = SnpEvidence(report=quoted.report, vcek=quoted.vcek, chain=chain)
        verdict = verifier.verify(
            Evidence(provider=evidence.provider, quote=encode_snp_evidence(with_chain)),
            expected_report_data,
            now,
        )
        product = verdict.measurements.get("product")
        claimed = {self.document.product} | ({parts.product} if parts is not None else set())
        if claimed != {product}:
            raise BundleError(
                "collateral_mismatch",
                f"the bundle names product {sorted(claimed)}, the chain is {product}'s",
            )
        return verdict


def _ders(chain: bytes) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in load_chain(chain)]
