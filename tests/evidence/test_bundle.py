"""Evidence bundles and `cocoon verify`: real receipts, real sim-tdx quotes checked by
dcap-qvl, the real Intel TDX sample quote; every tampering is refused with its reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cocoon.cli import app
from cocoon.crypto import Receipt, sha256, sign_receipt
from cocoon.crypto.receipts import verify_receipt
from cocoon.evidence.bundle import (
    EvidenceBundle,
    Price,
    collateral_of,
    decode_bundle,
    encode_bundle,
    make_bundle,
    tier_prices_of,
)
from cocoon.evidence.check import verify_bundle
from cocoon.evidence.collateral import collateral_for
from cocoon.evidence.errors import BundleError
from cocoon.payments.sides import receipt_price
from cocoon.pricing import Prices
from cocoon.tee.certs import (
    make_attested_certificate,
    make_certificate,
    parse_certificate,
    raw_public_key,
)
from cocoon.tee.claims import Claims, report_data
from cocoon.tee.evidence import Evidence, NoneProvider
from cocoon.tee.sim_tdx import SimTdxProvider, local_build_platform, shared_pki

# The real TDX sample quote and its collateral (tests/tee/data/tdx/README.md).
TDX_DIR = Path(__file__).resolve().parents[1] / "tee" / "data" / "tdx"
ISSUE_TIME = 1_750_331_763  # its TCB info issue time + 1 h: UpToDate then


def sample_quote() -> bytes:
    return (TDX_DIR / "tdx_quote").read_bytes()


def sample_collateral() -> str:
    return (TDX_DIR / "tdx_quote_collateral.json").read_text()


NETWORK = "cocoon-test"
MODEL = "smollm2@sha256:" + "ab" * 32
NOW = 1_760_000_000
PRICES = Prices()
runner = CliRunner()


def _claims(key: Ed25519PrivateKey, now: int, **changes: Any) -> Claims:
    fields: dict[str, Any] = {
        "role": "worker",
        "network": NETWORK,
        "tls_public_key": raw_public_key(key),
        "hpke_suite": "x25519",
        "hpke_public_key": b"\x01" * 32,
        "models": [MODEL],
        "version": "test",
        "issued_at": now,
    }
    fields.update(changes)
    return Claims(**fields)


def _receipt(key: Ed25519PrivateKey, now: int, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "network": NETWORK,
        "request_id": "req-1",
        "model": MODEL,
        "worker_key": raw_public_key(key),
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "request_hash": sha256(b"envelope"),
        "answer_hash": sha256(b"answer"),
        "answer_chunks": 30,
        "final": True,
        "started_ms": now * 1000,
        "finished_ms": now * 1000 + 800,
        "seq": 3,
        "coefficient_milli": 1500,
    }
    fields.update(changes)
    return sign_receipt(key, Receipt(**fields))


def _bundle(
    key: Ed25519PrivateKey,
    certificate: bytes,
    provider: str,
    now: int = NOW,
    **receipt_changes: Any,
) -> EvidenceBundle:
    receipt = _receipt(key, now, **receipt_changes)
    quote = parse_certificate(certificate).evidence.quote
    parsed = verify_receipt(receipt, NETWORK)
    return make_bundle(
        network=NETWORK,
        request_id=parsed.request_id,
        model=parsed.model,
        receipt=receipt,
        certificate=certificate,
        quote=quote,
        collateral=collateral_for(provider, quote, now),
        price=Price(
            amount_nano=receipt_price(PRICES, parsed),
            prices=tier_prices_of(PRICES),
            channel="0:" + "cd" * 32,
        ),
        gateway={"verdict": {"trusted": True}},
        now=now,
    )


@pytest.fixture(scope="module")
def sim_worker() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    provider = SimTdxProvider(shared_pki(), local_build_platform())
    return key, make_attested_certificate(key, _claims(key, NOW), provider, NOW)


def _reason(data: bytes, **kw: Any) -> str:
    with pytest.raises(BundleError) as caught:
        verify_bundle(data, **kw)
    return caught.value.reason


def _edit(bundle: EvidenceBundle, **changes: Any) -> bytes:
    return encode_bundle(msgspec.structs.replace(bundle, **changes))


def test_a_sim_tdx_bundle_verifies_offline(sim_worker: tuple[Ed25519PrivateKey, bytes]) -> None:
    key, cert = sim_worker
    bundle = _bundle(key, cert, "sim-tdx")
    data = encode_bundle(bundle)
    # One JSON document, bytes in base64: what a person downloads and mails on.
    doc = json.loads(data)
    assert doc["format"] == "cocoon-evidence/1"
    assert base64.b64decode(doc["receipt"]) == bundle.receipt
    assert decode_bundle(data) == bundle
    answer = verify_bundle(data)
    summary = answer.summary()
    assert summary["verified"] and summary["simulated"] and summary["provider"] == "sim-tdx"
    assert summary["tcb_status"] == "UpToDate"
    assert summary["image_hash"] == local_build_platform().image_hash
    assert summary["worker"] == answer.worker_key_id
    # 12 prompt at 1x and 30 completion at 4x, 1000 nano a token, coefficient 1.5.
    assert summary["amount_nano"] == (12 * 1000 + 30 * 4000) * 1000 * 1500 // 10**6
    # A real machine is not what this is: asking for one refuses it.
    assert _reason(data, require_hardware=True) == "not_hardware"
    assert _reason(data, images=["00" * 32]) == "image_not_allowed"
    assert verify_bundle(data, images=[local_build_platform().image_hash]).simulated


def test_tampering_is_refused_with_its_reason(sim_worker: tuple[Ed25519PrivateKey, bytes]) -> None:
    key, cert = sim_worker
    bundle = _bundle(key, cert, "sim-tdx")
    assert price_of(bundle) > 0
    assert _reason(b"{") == "malformed"
    assert _reason(_edit(bundle, format="cocoon-evidence/9")) == "unknown_format"
    # A token count changed inside the signed receipt: its signature no longer holds.
    signed = msgspec.msgpack.decode(bundle.receipt)
    body = msgspec.msgpack.decode(signed["body"])
    body["completion_tokens"] += 1
    signed["body"] = msgspec.msgpack.encode(body)
    assert _reason(_edit(bundle, receipt=msgspec.msgpack.encode(signed))) == "bad_receipt"
    assert _reason(_edit(bundle, model="other@sha256:" + "00" * 32)) == "receipt_mismatch"
    assert _reason(_edit(bundle, request_id="req-2")) == "receipt_mismatch"
    # The amount does not follow from the price list and the receipt.
    assert bundle.price is not None
    cheaper = msgspec.structs.replace(bundle.price, amount_nano=bundle.price.amount_nano - 1)
    assert _reason(_edit(bundle, price=cheaper)) == "price_mismatch"
    # Collateral edited (a TCB level raised by hand): its hash gives it away.
    assert (
        _reason(
            _edit(
                bundle,
                collateral=msgspec.structs.replace(
                    bundle.collateral, document=bundle.collateral.document.replace("1", "2", 1)
                ),
            )
        )
        == "collateral_mismatch"
    )
    # Another worker's certificate: the receipt is not its signature.
    other = Ed25519PrivateKey.generate()
    provider = SimTdxProvider(shared_pki(), local_build_platform())
    other_cert = make_attested_certificate(other, _claims(other, NOW), provider, NOW)
    assert _reason(_edit(bundle, worker_certificate=other_cert)) == "wrong_worker"
    # The quote shown beside the certificate is not the one in it.
    assert (
        _reason(_edit(bundle, quote=bundle.quote[:-1] + bytes([bundle.quote[-1] ^ 1])))
        == "quote_mismatch"
    )
    # Checked a year on, by its receipt's time it still verifies; at a later time the
    # certificate (one day) was not valid.
    assert _reason(encode_bundle(bundle), at=NOW + 365 * 86400) == "certificate_not_valid"


def price_of(bundle: EvidenceBundle) -> int:
    assert bundle.price is not None
    return bundle.price.amount_nano


def test_a_worker_not_attested_for_the_model_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    provider = SimTdxProvider(shared_pki(), local_build_platform())
    claims = _claims(key, NOW, models=["other@sha256:" + "00" * 32])
    cert = make_attested_certificate(key, claims, provider, NOW)
    assert _reason(encode_bundle(_bundle(key, cert, "sim-tdx"))) == "model_not_attested"


def test_quote_of_other_claims_is_refused() -> None:
    # Evidence made for other claims (another TLS key) cannot be moved into a certificate.
    key = Ed25519PrivateKey.generate()
    provider = SimTdxProvider(shared_pki(), local_build_platform())
    stolen = provider.evidence(report_data(_claims(Ed25519PrivateKey.generate(), NOW)))
    cert = make_certificate(key, _claims(key, NOW), stolen, NOW)
    assert _reason(encode_bundle(_bundle(key, cert, "sim-tdx"))) == "report_data_mismatch"


def test_provider_none_is_refused_unless_allowed() -> None:
    key = Ed25519PrivateKey.generate()
    cert = make_attested_certificate(key, _claims(key, NOW), NoneProvider(), NOW)
    data = encode_bundle(_bundle(key, cert, "none"))
    assert _reason(data) == "untrusted_provider"
    answer = verify_bundle(data, allow_untrusted=True)
    assert not answer.verdict.trusted and not answer.simulated


def test_real_intel_tdx_quote_runs_dcap_under_intels_root() -> None:
    """The sample quote from a real TDX machine passes DCAP under Intel's root with its
    collateral, and is then refused: it does not bind this certificate's claims."""
    key = Ed25519PrivateKey.generate()
    evidence = Evidence(provider="tdx", quote=sample_quote())
    cert = make_certificate(key, _claims(key, ISSUE_TIME), evidence, ISSUE_TIME)
    bundle = _bundle(key, cert, "none", now=ISSUE_TIME)
    bundle = msgspec.structs.replace(
        bundle, collateral=collateral_of("tdx", "00606a000000-platform", sample_collateral())
    )
    assert _reason(encode_bundle(bundle)) == "report_data_mismatch"
    # Its collateral lapsed later: checked then, DCAP itself refuses it.
    assert _reason(encode_bundle(bundle), at=ISSUE_TIME + 3600 * 24 * 300) in {
        "collateral_expired",
        "certificate_not_valid",
    }


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_cocoon_verify_exit_codes(
    sim_worker: tuple[Ed25519PrivateKey, bytes], tmp_path: Path
) -> None:
    key, cert = sim_worker
    bundle = _bundle(key, cert, "sim-tdx")
    good = tmp_path / "good.json"
    good.write_bytes(encode_bundle(bundle))
    code, out = _cli(str(good))
    assert code == 0, out
    assert out.startswith("verified: ") and "SIMULATED TDX" in out and MODEL in out
    code, out = _cli(str(good), "--json")
    assert code == 0 and json.loads(out)["verified"] is True
    bad = tmp_path / "bad.json"
    bad.write_bytes(_edit(bundle, request_id="req-2"))
    code, out = _cli(str(bad))
    assert code == 1
    assert out.strip().count("\n") == 0 and "refused (receipt_mismatch)" in out
    code, out = _cli(str(bad), "--json")
    assert code == 1 and json.loads(out)["reason"] == "receipt_mismatch"
    code, out = _cli(str(tmp_path / "missing.json"))
    assert code == 1 and "refused (unreadable)" in out
