"""Evidence bundles of SEV-SNP workers and `cocoon verify`: real sim-snp reports and
VCEKs checked by the nodes' SNP code offline, the real Milan report under AMD's pinned
roots; every tampering refused with its reason."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cocoon.cli import app
from cocoon.crypto.receipts import verify_receipt
from cocoon.evidence.bundle import (
    EvidenceBundle,
    Price,
    collateral_of,
    encode_bundle,
    make_bundle,
    tier_prices_of,
)
from cocoon.evidence.check import verify_bundle
from cocoon.evidence.collateral import collateral_for
from cocoon.evidence.errors import BundleError
from cocoon.evidence.snp import SnpCollateral, snp_parts
from cocoon.payments.sides import receipt_price
from cocoon.tee.certs import make_attested_certificate, make_certificate, parse_certificate
from cocoon.tee.claims import report_data
from cocoon.tee.evidence import Evidence
from cocoon.tee.sim_snp import (
    SIM_TCB,
    SimSnpProvider,
    SimulatedAmdPki,
    platform_for_image,
    shared_pki,
)
from cocoon.tee.snp_certs import parse_vcek
from cocoon.tee.snp_policy import SnpEvidence, encode_snp_evidence

from .test_bundle import NETWORK, NOW, PRICES, _claims, _receipt

# The real Milan report, its VCEK and chain (tests/tee/data/sev-snp/README.md).
SNP_DIR = Path(__file__).resolve().parents[1] / "tee" / "data" / "sev-snp"
SNP_VECTOR_TIME = 1_700_000_000  # within the VCEK's validity
runner = CliRunner()
PLATFORM = platform_for_image("bundle", chip="a")


def _bundle(key: Ed25519PrivateKey, certificate: bytes, now: int = NOW, crl: str = "") -> bytes:
    receipt = _receipt(key, now)
    parsed = verify_receipt(receipt, NETWORK)
    cert = parse_certificate(certificate)
    quote = cert.evidence.quote
    bundle = make_bundle(
        network=NETWORK,
        request_id=parsed.request_id,
        model=parsed.model,
        receipt=receipt,
        certificate=certificate,
        quote=quote,
        collateral=collateral_for(cert.evidence.provider, quote, now, snp_crl_file=crl),
        price=Price(
            amount_nano=receipt_price(PRICES, parsed),
            prices=tier_prices_of(PRICES),
            channel="0:" + "cd" * 32,
        ),
        snp=snp_parts(quote),
        gateway={},
        now=now,
    )
    return encode_bundle(bundle)


def _worker(provider: Any, now: int = NOW) -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    return key, make_attested_certificate(key, _claims(key, now), provider, now)


def _with_evidence(evidence: SnpEvidence, provider: str = "sim-snp", now: int = NOW) -> bytes:
    """A worker certificate carrying `evidence` made by hand (bound to its claims or not)."""
    key = Ed25519PrivateKey.generate()
    claims = _claims(key, now)
    quote = Evidence(provider=provider, quote=encode_snp_evidence(evidence))
    return _bundle(key, make_certificate(key, claims, quote, now), now)


def _refusal(data: bytes, **kw: Any) -> BundleError:
    with pytest.raises(BundleError) as caught:
        verify_bundle(data, **kw)
    return caught.value


def _reason(data: bytes, **kw: Any) -> str:
    return _refusal(data, **kw).reason


def _decode(data: bytes) -> EvidenceBundle:
    return msgspec.json.decode(data, type=EvidenceBundle)


def _edit(data: bytes, **changes: Any) -> bytes:
    return encode_bundle(msgspec.structs.replace(_decode(data), **changes))


def _edit_collateral(data: bytes, rehash: bool = True, **changes: Any) -> bytes:
    """The SNP collateral document changed; its hash recomputed unless `rehash` is False."""
    bundle = _decode(data)
    doc = msgspec.json.decode(bundle.collateral.document, type=SnpCollateral)
    document = msgspec.json.encode(msgspec.structs.replace(doc, **changes)).decode()
    collateral = msgspec.structs.replace(bundle.collateral, document=document)
    if rehash:
        collateral = collateral_of(collateral.provider, collateral.reference, document)
    return encode_bundle(msgspec.structs.replace(bundle, collateral=collateral))


@pytest.fixture(scope="module")
def sim() -> bytes:
    key, cert = _worker(SimSnpProvider(platform=PLATFORM))
    return _bundle(key, cert)


def test_a_sim_snp_bundle_verifies_offline(sim: bytes) -> None:
    doc = json.loads(sim)
    # The report and VCEK readable without msgpack, for any SNP tool.
    assert len(base64.b64decode(doc["snp"]["report"])) == 0x4A0
    # This chip's VCEK (its to-be-signed part: the ASK's PSS signature is salted).
    vcek = parse_vcek(base64.b64decode(doc["snp"]["vcek"]))
    assert vcek.tbs == parse_vcek(SimSnpProvider(platform=PLATFORM).vcek).tbs
    assert doc["snp"]["product"] == "Milan"
    assert doc["collateral"]["provider"] == "sim-snp"
    assert doc["collateral"]["reference"].startswith("simulated ARK-Milan key ")
    summary = verify_bundle(sim).summary()
    assert summary["provider"] == "sim-snp" and summary["tee"] == "sev-snp"
    assert summary["simulated"] is True and summary["product"] == "Milan"
    assert summary["tcb"] == SIM_TCB
    assert summary["launch_measurement"] == PLATFORM.measurement.hex()
    assert summary["image_hash"] == PLATFORM.image_hash
    assert "simulated SEV-SNP report verified" in summary["attestation"]
    assert _reason(sim, require_hardware=True) == "not_hardware"
    assert _reason(sim, images=["00" * 32]) == "image_not_allowed"
    assert verify_bundle(sim, images=[PLATFORM.image_hash]).simulated


def test_cocoon_verify_names_the_kind_measurement_and_tcb(sim: bytes, tmp_path: Path) -> None:
    path = tmp_path / "snp.json"
    path.write_bytes(sim)
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    line, measurement = result.stdout.splitlines()
    assert "SIMULATED SEV-SNP Milan (not hardware)" in line
    assert "TCB bootloader 4, tee 0, snp 22, microcode 213" in line
    assert measurement == f"launch measurement: {PLATFORM.measurement.hex()}"
    path.write_bytes(_edit(sim, request_id="other"))
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().startswith("cocoon: refused (receipt_mismatch):")


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


def test_a_report_changed_after_signing_is_bad_signature() -> None:
    provider = SimSnpProvider(platform=PLATFORM)
    key = Ed25519PrivateKey.generate()
    raw = provider.report(report_data(_claims(key, NOW)))
    forged = SnpEvidence(report=_flip(raw, 0x90), vcek=provider.vcek)  # the measurement
    quote = Evidence(provider="sim-snp", quote=encode_snp_evidence(forged))
    data = _bundle(key, make_certificate(key, _claims(key, NOW), quote, NOW))
    assert _reason(data) == "bad_signature"


def test_another_chips_vcek_is_refused() -> None:
    chip_a, chip_b = PLATFORM, platform_for_image("bundle", chip="b")
    a, b = SimSnpProvider(platform=chip_a), SimSnpProvider(platform=chip_b)
    key = Ed25519PrivateKey.generate()
    raw = a.report(report_data(_claims(key, NOW)))
    # Chip A's report beside chip B's VCEK: B's key did not sign it.
    swapped = SnpEvidence(report=raw, vcek=b.vcek)
    quote = Evidence(provider="sim-snp", quote=encode_snp_evidence(swapped))
    data = _bundle(key, make_certificate(key, _claims(key, NOW), quote, NOW))
    assert _reason(data) == "bad_signature"
    # Signed by chip B's key, with B's genuine VCEK, but naming chip A: the VCEK's hwID
    # is not the report's chip.
    a.vcek_key, a.vcek = b.vcek_key, b.vcek
    key2, cert = _worker(a)
    refused = _refusal(_bundle(key2, cert))
    assert refused.reason == "chain_invalid" and "the VCEK is for chip" in str(refused)


def test_a_report_for_other_claims_is_report_data_mismatch() -> None:
    provider = SimSnpProvider(platform=PLATFORM)
    stolen = provider.report(report_data(_claims(Ed25519PrivateKey.generate(), NOW)))
    assert _reason(_with_evidence(SnpEvidence(report=stolen, vcek=provider.vcek))) == (
        "report_data_mismatch"
    )


def test_a_debug_guest_is_refused() -> None:
    key, cert = _worker(SimSnpProvider(platform=platform_for_image("bundle", debug=True)))
    assert _reason(_bundle(key, cert)) == "debug_guest"


def test_a_root_the_bundle_brings_is_never_trusted() -> None:
    # Another simulated PKI (anyone can make one): its chain rides in the bundle with a
    # correct hash, and is refused because this program derives the simulated root itself.
    forged = SimSnpProvider(pki=SimulatedAmdPki(b"forged"), platform=PLATFORM)
    key, cert = _worker(forged)
    data = _bundle(key, cert)
    data = _edit_collateral(data, ask_ark=forged.pki.chain_pem.decode())
    refused = _refusal(data)
    assert refused.reason == "chain_invalid" and "not a pinned AMD root" in str(refused)
    # Simulated evidence relabelled as real: AMD's pinned roots do not know its ARK.
    provider = SimSnpProvider(platform=PLATFORM)
    key = Ed25519PrivateKey.generate()
    raw = provider.report(report_data(_claims(key, NOW)))
    relabelled = Evidence(
        provider="sev-snp",
        quote=encode_snp_evidence(
            SnpEvidence(report=raw, vcek=provider.vcek, chain=shared_pki().chain_pem)
        ),
    )
    data = _bundle(key, make_certificate(key, _claims(key, NOW), relabelled, NOW))
    refused = _refusal(data)
    assert refused.reason == "chain_invalid" and "not a pinned AMD root" in str(refused)


def test_bundle_edits_are_refused(sim: bytes) -> None:
    parts = _decode(sim).snp
    assert parts is not None
    changed = msgspec.structs.replace(parts, report=_flip(parts.report, 0x90))
    assert _reason(_edit(sim, snp=changed)) == "quote_mismatch"
    other_product = msgspec.structs.replace(parts, product="Genoa")
    assert _reason(_edit(sim, snp=other_product)) == "collateral_mismatch"
    assert _reason(_edit_collateral(sim, rehash=False, product="Genoa")) == "collateral_mismatch"
    assert _reason(_edit_collateral(sim, product="Genoa")) == "collateral_mismatch"
    # The chain in the wrong order (ARK first): the chain check says so.
    ask, ark = shared_pki().ask, shared_pki().ark
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ark, ask)).decode()
    assert _reason(_edit_collateral(sim, ask_ark=pem)) == "chain_invalid"
    # The CRL's reference is its hash.
    assert _reason(_edit_collateral(sim, crl=b"x", crl_sha256="00")) == "collateral_mismatch"


def _crl(path: Path, *, revoke: bool) -> str:
    pki = shared_pki()
    when = datetime.datetime.fromtimestamp
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ark.subject)
        .last_update(when(NOW - 86400, tz=datetime.UTC))
        .next_update(when(NOW + 86400, tz=datetime.UTC))
    )
    if revoke:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(pki.ask.serial_number)
            .revocation_date(when(NOW - 3600, tz=datetime.UTC))
            .build()
        )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    path.write_bytes(
        builder.sign(pki.ark_key, hashes.SHA384(), rsa_padding=pss).public_bytes(
            serialization.Encoding.DER
        )
    )
    return str(path)


def test_the_clients_crl_travels_and_is_checked(tmp_path: Path) -> None:
    key, cert = _worker(SimSnpProvider(platform=PLATFORM))
    good = _bundle(key, cert, crl=_crl(tmp_path / "ok.crl", revoke=False))
    assert ", CRL sha256:" in _decode(good).collateral.reference
    assert verify_bundle(good).simulated
    revoked = _bundle(key, cert, crl=_crl(tmp_path / "revoked.crl", revoke=True))
    assert _reason(revoked) == "chain_invalid"
    with pytest.raises(BundleError) as caught:
        _bundle(key, cert, crl=str(tmp_path / "missing.crl"))
    assert caught.value.reason == "collateral_unavailable"


def test_the_real_milan_report_runs_under_amds_pinned_roots() -> None:
    """The real report and VCEK as a "sev-snp" worker's evidence: the chain to AMD's Milan
    ARK (pinned, named by the product) and the signature hold; it is then refused
    because it does not bind this certificate's claims."""
    real = SnpEvidence(report=snp_report(), vcek=snp_vcek())
    data = _with_evidence(real, provider="sev-snp", now=SNP_VECTOR_TIME)
    bundle = _decode(data)
    assert bundle.collateral.reference.startswith("AMD ARK-Milan key ")
    doc = msgspec.json.decode(bundle.collateral.document, type=SnpCollateral)
    assert load_ders(doc.ask_ark) == load_ders(snp_chain().decode())
    assert _reason(data) == "report_data_mismatch"
    # The same with its chain sent by the worker, and with the report tampered with.
    with_chain = SnpEvidence(report=snp_report(), vcek=snp_vcek(), chain=snp_chain())
    assert _reason(_with_evidence(with_chain, "sev-snp", SNP_VECTOR_TIME)) == (
        "report_data_mismatch"
    )
    tampered = SnpEvidence(report=_flip(snp_report(), 0x90), vcek=snp_vcek())
    assert _reason(_with_evidence(tampered, "sev-snp", SNP_VECTOR_TIME)) == "bad_signature"


def snp_report() -> bytes:
    return (SNP_DIR / "attestation.bin").read_bytes()


def snp_vcek() -> bytes:
    return (SNP_DIR / "vcek.der").read_bytes()


def snp_chain() -> bytes:
    return (SNP_DIR / "ask_ark_milan.pem").read_bytes()


def load_ders(pem: str) -> list[bytes]:
    return [
        c.public_bytes(serialization.Encoding.DER)
        for c in x509.load_pem_x509_certificates(pem.encode())
    ]
