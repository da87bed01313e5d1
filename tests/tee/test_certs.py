from __future__ import annotations

import contextlib
import datetime
import hashlib
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.tee import (
    CertificateError,
    Evidence,
    der_from_pem,
    key_id,
    make_certificate,
    parse_certificate,
    raw_public_key,
    report_data,
    tls_files,
    write_pem,
)

from .conftest import NOW, claims_for

Issue = Callable[..., bytes]


def test_roundtrip(key: Ed25519PrivateKey) -> None:
    claims = claims_for(key, role="proxy")
    evidence = Evidence(provider="none", quote=report_data(claims))
    der = make_certificate(key, claims, evidence, NOW, validity_s=3600)

    peer = parse_certificate(der)

    public = raw_public_key(key)
    assert peer.der == der
    assert peer.der_sha256 == hashlib.sha256(der).digest()
    assert peer.public_key == public
    assert peer.key_id == hashlib.sha256(public).hexdigest()[:16] == key_id(public)
    assert peer.claims == claims
    assert peer.evidence == evidence
    assert peer.not_before == NOW - 60
    assert peer.not_after == NOW + 3600


def test_subject_names_role_and_key(key: Ed25519PrivateKey, issue: Issue) -> None:
    cert = x509.load_der_x509_certificate(issue(role="client"))
    cn = f"cocoon-client-{key_id(raw_public_key(key))}"
    assert cert.subject.rfc4514_string() == f"CN={cn}"
    assert cert.issuer == cert.subject
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.59999.1"))
    assert not ext.critical


def test_claims_for_another_key_refused_at_issue(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    claims = claims_for(other)
    with pytest.raises(CertificateError) as info:
        make_certificate(key, claims, Evidence("none", report_data(claims)), NOW)
    assert info.value.reason == "key_mismatch"


def test_claims_for_another_key_refused_at_parse(
    key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A certificate correctly self-signed by `key` whose extension names a
    # different TLS key (e.g. claims and evidence lifted from another node).
    # Build it by bypassing make_certificate's own check.
    import cocoon.tee.certs as certs

    other = Ed25519PrivateKey.generate()
    claims = claims_for(other)
    evidence = Evidence("none", report_data(claims))
    monkeypatch.setattr(certs, "raw_public_key", lambda k: raw_public_key(other))
    der = make_certificate(key, claims, evidence, NOW)
    monkeypatch.undo()
    with pytest.raises(CertificateError) as info:
        parse_certificate(der)
    assert info.value.reason == "key_mismatch"


def test_tampered_byte_refused(issue: Issue) -> None:
    der = bytearray(issue())
    # Flip one bit in the middle of the claims (inside the signed TBS part).
    index = bytes(der).index(b"testnet")
    der[index] ^= 0x01
    with pytest.raises(CertificateError) as info:
        parse_certificate(bytes(der))
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("first", [0x80, 0xFF], ids=["0x80", "0xff"])
def test_a_serial_number_that_is_not_positive_is_refused(issue: Issue, first: int) -> None:
    """RFC 5280 wants it positive; cryptography only warns of it for now."""
    der = issue()
    serial = x509.load_der_x509_certificate(der).serial_number.to_bytes(8, "big")
    at = der.index(b"\x02\x08" + serial) + 2  # INTEGER, 8 bytes: the serial
    tampered = der[:at] + bytes([first]) + der[at + 1 :]
    with warnings.catch_warnings(), pytest.raises(CertificateError) as info:
        warnings.simplefilter("error")  # a warning let through would fail the parse
        parse_certificate(tampered)
    assert info.value.reason == "malformed" and "serial" in str(info.value)


def test_a_name_attribute_of_the_wrong_length_is_refused(issue: Issue) -> None:
    """cryptography only warns of a country name that is not two letters long."""
    der = issue()
    at = der.index(bytes.fromhex("0603550403"))  # the OID of the subject's common name
    # The issuer's common name becomes a country name (2.5.4.6) of about 30 letters.
    tampered = der[:at] + bytes.fromhex("0603550406") + der[at + 5 :]
    with warnings.catch_warnings(), pytest.raises(CertificateError) as info:
        warnings.simplefilter("error")  # a warning let through would fail the parse
        parse_certificate(tampered)
    assert info.value.reason == "malformed" and "name" in str(info.value)


def test_trailing_bytes_refused(issue: Issue) -> None:
    with pytest.raises(CertificateError):
        parse_certificate(issue() + b"\x00")


_FIXED_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
_FIXED_CLAIMS = claims_for(_FIXED_KEY)
_FIXED_DER = make_certificate(
    _FIXED_KEY, _FIXED_CLAIMS, Evidence("none", report_data(_FIXED_CLAIMS)), NOW
)


@settings(max_examples=300)
@given(data=st.data())
def test_any_corruption_raises_only_certificate_error(data: st.DataObject) -> None:
    der = bytearray(_FIXED_DER)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(der) - 1))
        der[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(der)))
    mutated = bytes(der[:cut]) if data.draw(st.booleans()) else bytes(der)
    # Anything may happen to the bytes; only CertificateError may come out.
    with contextlib.suppress(CertificateError):
        parse_certificate(mutated)


@given(st.binary(max_size=512))
def test_garbage_raises_certificate_error(garbage: bytes) -> None:
    with pytest.raises(CertificateError) as info:
        parse_certificate(garbage)
    assert info.value.reason == "malformed"


def test_unknown_critical_extension_refused(key: Ed25519PrivateKey) -> None:
    from cocoon.tee.certs import _ext_encoder, _RaTlsExtension
    from cocoon.tee.claims import canonical_bytes

    claims = claims_for(key)
    payload = _RaTlsExtension(canonical_bytes(claims), Evidence("none", report_data(claims)))
    name = x509.Name(
        [
            x509.NameAttribute(
                x509.NameOID.COMMON_NAME, f"cocoon-worker-{key_id(raw_public_key(key))}"
            )
        ]
    )
    start = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.59999.1"), _ext_encoder.encode(payload)
            ),
            critical=False,
        )
    )
    good = builder.sign(key, algorithm=None).public_bytes(serialization.Encoding.DER)
    assert parse_certificate(good).claims == claims  # the hand-built one is otherwise fine
    bad = builder.add_extension(
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.59999.2"), b"x"),
        critical=True,
    ).sign(key, algorithm=None)
    with pytest.raises(CertificateError, match="critical"):
        parse_certificate(bad.public_bytes(serialization.Encoding.DER))


def test_certificate_without_extension_refused(key: Ed25519PrivateKey) -> None:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "plain")])
    start = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, algorithm=None)
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(CertificateError) as info:
        parse_certificate(der)
    assert info.value.reason == "malformed"


def test_pem_and_tls_files(key: Ed25519PrivateKey, issue: Issue, tmp_path: Path) -> None:
    der = issue()
    assert der_from_pem(write_pem(der)) == der

    cert_path, key_path = tls_files(key, der, tmp_path / "tls")
    assert der_from_pem(cert_path.read_bytes()) == der
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()

    with pytest.raises(CertificateError) as info:
        tls_files(Ed25519PrivateKey.generate(), der, tmp_path / "tls")
    assert info.value.reason == "key_mismatch"
