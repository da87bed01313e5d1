"""The evidence bundle of one answer: its format, and how a client builds it.

A bundle is one JSON document (bytes in base64, as msgspec writes them) holding
everything needed to check, on another machine and without the network, what
ran where for one answer:

- the worker's signed receipt (request id, model id, tokens, hashes, times,
  price coefficient), exactly as received;
- the worker's RA-TLS certificate (its keys and attested claims) and the quote
  in it, repeated at the top level so that a reader finds it without X.509;
- the collateral the quote is checked against, with its reference and its
  SHA-256: for TDX, Intel's TCB info, QE identity and CRLs (or the simulated
  PKI's) and the platform they are for; for SEV-SNP, the product, the ASK and
  ARK and the CRL if the client keeps one (`evidence.snp`);
- for SEV-SNP, the report and the VCEK unpacked from the quote (`snp`), so that
  a reader can hand them to `cocoon attest verify` or any other SNP tool;
- the price list the answer was paid at, the amount and the payment channel.

What the gateway saw besides (its verdict, what the root contract lists) rides
along under `gateway`, marked as its view: a verifier checks the rest itself
(`evidence.check`).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec

from ..pricing import Prices, TierPrices

FORMAT = "cocoon-evidence/1"


class Collateral(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a quote is checked against, carried so that checking needs no network."""

    provider: str
    """The attestation provider of the quote: "tdx", "sim-tdx", "sev-snp", "sim-snp" or
    "none"."""
    reference: str
    """Which collateral this is: the platform (FMSPC-CA) for tdx, the simulated root's
    key id for sim-tdx, the product and its ARK for sev-snp and sim-snp, "" for none."""
    sha256: str
    """Hex SHA-256 of `document`."""
    document: str
    """The collateral JSON: dcap-qvl QuoteCollateralV3 form for TDX, `SnpCollateral` for
    SEV-SNP; "" for none."""


class SnpParts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An SEV-SNP worker's report and VCEK, as in its quote, for readers of the bundle."""

    report: bytes
    """The raw attestation report (0x4A0 bytes)."""
    vcek: bytes
    """The chip's VCEK certificate, DER."""
    product: str
    """The product whose AMD roots the VCEK chains to ("Milan", "Genoa", "Turin")."""


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the answer cost, and the price list that makes it so from the receipt."""

    amount_nano: int
    prices: TierPrices
    channel: str
    """The payment channel (client to proxy) it was owed on."""


class EvidenceBundle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One answer's evidence (see the module docstring)."""

    format: str
    network: str
    request_id: str
    model: str
    receipt: bytes
    worker_certificate: bytes
    quote: bytes
    collateral: Collateral
    price: Price | None
    created_at: int
    snp: SnpParts | None = None
    """Set for SEV-SNP evidence only; a verifier checks it equals the quote's."""
    gateway: dict[str, Any] = msgspec.field(default_factory=dict)
    """The gateway's own view when it made the bundle (verdict, root listings): shown,
    not trusted, by a verifier."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(EvidenceBundle)


def encode_bundle(bundle: EvidenceBundle) -> bytes:
    return _encoder.encode(bundle)


def decode_bundle(data: bytes) -> EvidenceBundle:
    """The bundle in `data`; msgspec.DecodeError / ValidationError if it is not one."""
    return _decoder.decode(data)


def tier_prices_of(prices: Prices) -> TierPrices:
    """`prices` in the one form a bundle carries (a plain list is tier 1x, one worker)."""
    if isinstance(prices, TierPrices):
        return prices
    return TierPrices(**msgspec.structs.asdict(prices))


def collateral_of(provider: str, reference: str, document: str) -> Collateral:
    return Collateral(
        provider=provider,
        reference=reference,
        sha256=hashlib.sha256(document.encode()).hexdigest(),
        document=document,
    )


def make_bundle(
    *,
    network: str,
    request_id: str,
    model: str,
    receipt: bytes,
    certificate: bytes,
    quote: bytes,
    collateral: Collateral,
    price: Price | None,
    gateway: dict[str, Any],
    snp: SnpParts | None = None,
    now: int | None = None,
) -> EvidenceBundle:
    return EvidenceBundle(
        format=FORMAT,
        network=network,
        request_id=request_id,
        model=model,
        receipt=receipt,
        worker_certificate=certificate,
        quote=quote,
        collateral=collateral,
        price=price,
        created_at=int(time.time()) if now is None else now,
        snp=snp,
        gateway=gateway,
    )
