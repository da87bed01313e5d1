"""What the simulated PKIs of sim-tdx and sim-snp share: their certificates'
validity, key usages and building, the DER entries of their hand-made
extensions, and the check their providers make of report data."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from cocoon import __version__
from cocoon.tee import der
from cocoon.tee.claims import REPORT_DATA_LEN
from cocoon.tee.errors import EvidenceError

# Fixed, so that every node of a simulated network builds the same certificates.
CERT_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
CERT_NOT_AFTER = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)


def key_usage(ca: bool) -> x509.KeyUsage:
    """keyCertSign and cRLSign for a CA; digitalSignature and nonRepudiation else."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def sim_certificate(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    serial: int,
    ca: bool,
    algorithm: hashes.SHA256 | hashes.SHA384,
    path_length: int | None = None,
    key_ids: bool = False,
    extra: x509.ExtensionType | None = None,
    rsa_padding: padding.PSS | None = None,
) -> x509.Certificate:
    """A certificate of a simulated PKI, valid CERT_NOT_BEFORE to CERT_NOT_AFTER;
    `key_ids` adds the subject and authority key identifiers (Intel's have them)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(CERT_NOT_BEFORE)
        .not_valid_after(CERT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(key_usage(ca), critical=True)
    )
    if key_ids:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, algorithm, rsa_padding=rsa_padding)


def oid_entry(oid: str, value: bytes) -> bytes:
    """SEQUENCE { OBJECT IDENTIFIER oid, value }: one entry of a vendor extension."""
    return der.encode_seq(der.encode_oid(oid), value)


def check_report_data(report_data: bytes) -> None:
    """Refuse report data of the wrong length before anything is signed over it."""
    if len(report_data) != REPORT_DATA_LEN:
        raise EvidenceError(
            "malformed", f"report data must be {REPORT_DATA_LEN} bytes, got {len(report_data)}"
        )


def local_build_image() -> str:
    """The simulated image name of this build: the measured image a sim network pins."""
    return f"cocoon-{__version__}"
