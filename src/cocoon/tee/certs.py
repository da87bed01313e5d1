"""RA-TLS certificates: a TLS key, the node's claims and their evidence in one X.509.

The certificate is self-signed with the node's Ed25519 TLS key. Nothing about
it is trusted because of who signed it; it is trusted because the evidence in
its extension commits (through :func:`cocoon.tee.claims.report_data`) to claims
that name this very key. :func:`parse_certificate` checks the structure and
those bindings; :func:`cocoon.tee.policy.verify_peer` decides whether the peer
is acceptable.

Layout:

- subject = issuer = CN ``cocoon-{role}-{key_id}``, ``key_id`` being the first
  16 hex digits of SHA-256 of the raw public key;
- validity ``[now - 60, now + validity_s]`` (60 s of allowance for clock skew);
- extension :data:`RA_TLS_EXTENSION_OID` (non-critical, so ordinary TLS stacks
  ignore it) whose value is msgpack ``[canonical claims bytes, evidence]``.
  A future layout gets a new OID rather than a version field.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import warnings
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from cocoon.tee.claims import (
    Claims,
    canonical_bytes,
    claims_from_canonical_bytes,
    report_data,
)
from cocoon.tee.errors import AttestationError, CertificateError
from cocoon.tee.evidence import AttestationProvider, Evidence

RA_TLS_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.59999.1")
"""Private-arc OID of the claims+evidence extension (layout v1)."""

CLOCK_SKEW_ALLOWANCE_S = 60
"""How far before ``now`` a new certificate's validity starts."""

DEFAULT_VALIDITY_S = 86400


class _RaTlsExtension(msgspec.Struct, array_like=True, frozen=True):
    """Value of the RA-TLS extension: the claims exactly as hashed, and the evidence."""

    claims: bytes
    evidence: Evidence


_ext_encoder = msgspec.msgpack.Encoder()
_ext_decoder = msgspec.msgpack.Decoder(_RaTlsExtension)


class PeerCertificate(msgspec.Struct, frozen=True):
    """A parsed RA-TLS certificate whose structure and key bindings have been checked."""

    der: bytes
    """The certificate as received."""
    der_sha256: bytes
    """SHA-256 of ``der``: what the in-band proof of possession signs."""
    public_key: bytes
    """Raw 32-byte Ed25519 public key."""
    key_id: str
    """First 16 hex digits of SHA-256 of ``public_key``."""
    claims: Claims
    """The claims in the extension; ``claims.tls_public_key == public_key``."""
    evidence: Evidence
    """The evidence in the extension; not yet verified (see ``verify_peer``)."""
    not_before: int
    """Start of validity, unix seconds."""
    not_after: int
    """End of validity, unix seconds."""


def key_id(public_key: bytes) -> str:
    """Short printable id of a raw Ed25519 public key (16 hex digits of its SHA-256)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _utc(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


def make_certificate(
    key: Ed25519PrivateKey,
    claims: Claims,
    evidence: Evidence,
    now: int,
    validity_s: int = DEFAULT_VALIDITY_S,
) -> bytes:
    """A self-signed RA-TLS certificate (DER) carrying ``claims`` and ``evidence``.

    Raises CertificateError("key_mismatch") if the claims name another key.
    The evidence is not checked here; the peer checks it.
    """
    public = raw_public_key(key)
    if claims.tls_public_key != public:
        raise CertificateError("key_mismatch", "claims.tls_public_key is not the signing key")
    if validity_s <= 0:
        raise CertificateError("malformed", f"validity must be positive, got {validity_s}")
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"cocoon-{claims.role}-{key_id(public)}")]
    )
    extension = _ext_encoder.encode(
        _RaTlsExtension(claims=canonical_bytes(claims), evidence=evidence)
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        # Random positive serial with the top bit of 63 set, so it is always
        # 8 DER octets (RFC 5280: positive, at most 20 octets) and every
        # certificate for the same claims has the same length.
        .serial_number(secrets.randbits(63) | (1 << 62))
        .not_valid_before(_utc(now - CLOCK_SKEW_ALLOWANCE_S))
        .not_valid_after(_utc(now + validity_s))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.UnrecognizedExtension(RA_TLS_EXTENSION_OID, extension), critical=False)
        .sign(key, algorithm=None)
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def make_attested_certificate(
    key: Ed25519PrivateKey,
    claims: Claims,
    provider: AttestationProvider,
    now: int,
    validity_s: int = DEFAULT_VALIDITY_S,
) -> bytes:
    """Obtain evidence for ``claims`` from ``provider`` and issue the certificate."""
    evidence = provider.evidence(report_data(claims))
    return make_certificate(key, claims, evidence, now, validity_s)


def parse_certificate(der: bytes) -> PeerCertificate:
    """Parse and check a peer's RA-TLS certificate; raise only CertificateError.

    Checks: DER well-formed with nothing trailing, Ed25519 key and signature,
    valid self-signature, no unknown critical extension, RA-TLS extension
    present and decodable, canonical claims, ``claims.tls_public_key`` equal
    to the certificate key ("key_mismatch"), subject CN consistent with role
    and key. Validity times and the evidence are left to :func:`cocoon.tee.policy.verify_peer`.
    """
    try:
        return _parse_certificate(der)
    except CertificateError:
        raise
    except AttestationError as exc:
        # Malformed claims inside the extension: the certificate is malformed.
        raise CertificateError("malformed", str(exc)) from None
    # Everything the parsers below are documented to raise on bad input; the
    # caller is promised a CertificateError whatever the peer sends.
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        InvalidSignature,
        x509.ExtensionNotFound,
        x509.DuplicateExtension,
        x509.InvalidVersion,
        msgspec.DecodeError,
        msgspec.ValidationError,
    ) as exc:
        raise CertificateError("malformed", f"{type(exc).__name__}: {exc}") from None


def _parse_certificate(der: bytes) -> PeerCertificate:
    der = bytes(der)
    with warnings.catch_warnings():
        # A serial number that is not positive: refused here, as cryptography will
        # refuse it itself in a release to come (loading or reading it only warns).
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        cert = x509.load_der_x509_certificate(der)
        serial = cert.serial_number
    if serial <= 0:
        raise CertificateError("malformed", "the serial number is not positive (RFC 5280)")
    if cert.public_bytes(serialization.Encoding.DER) != der:
        raise CertificateError("malformed", "certificate is not exactly one DER structure")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise CertificateError("malformed", "certificate is not signed with Ed25519")
    public_key = cert.public_key()
    if not isinstance(public_key, Ed25519PublicKey):
        raise CertificateError("malformed", "certificate key is not Ed25519")
    with warnings.catch_warnings():
        # A name attribute of the wrong length (a country name of 30 letters):
        # cryptography only warns of it as it reads the name; it is malformed.
        warnings.simplefilter("error", UserWarning)
        try:
            self_issued = cert.issuer == cert.subject
        except UserWarning as exc:
            raise CertificateError("malformed", f"certificate name: {exc}") from None
    if not self_issued:
        raise CertificateError("malformed", "certificate is not self-issued")
    public_key.verify(cert.signature, cert.tbs_certificate_bytes)  # InvalidSignature

    # RFC 5280 §4.2: a certificate with a critical extension we do not
    # understand must be rejected.
    for ext in cert.extensions:
        if ext.critical and ext.oid != ExtensionOID.BASIC_CONSTRAINTS:
            raise CertificateError("malformed", f"unsupported critical extension {ext.oid}")
    extension = cert.extensions.get_extension_for_oid(RA_TLS_EXTENSION_OID).value
    if not isinstance(extension, x509.UnrecognizedExtension):
        raise CertificateError("malformed", "RA-TLS extension has an unexpected type")
    payload = _ext_decoder.decode(extension.value)
    claims = claims_from_canonical_bytes(payload.claims)

    public = raw_public_key(public_key)
    if claims.tls_public_key != public:
        raise CertificateError("key_mismatch", "claims name a key other than the certificate's")
    kid = key_id(public)
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    expected_cn = f"cocoon-{claims.role}-{kid}"
    if [attr.value for attr in common_names] != [expected_cn]:
        raise CertificateError("malformed", f"subject is not CN={expected_cn}")

    return PeerCertificate(
        der=der,
        der_sha256=hashlib.sha256(der).digest(),
        public_key=public,
        key_id=kid,
        claims=claims,
        evidence=payload.evidence,
        not_before=int(cert.not_valid_before_utc.timestamp()),
        not_after=int(cert.not_valid_after_utc.timestamp()),
    )


def write_pem(der: bytes) -> bytes:
    """PEM encoding of a DER certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError("malformed", f"not a DER certificate: {exc}") from None
    return cert.public_bytes(serialization.Encoding.PEM)


def der_from_pem(pem: bytes) -> bytes:
    """DER encoding of a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError("malformed", f"not a PEM certificate: {exc}") from None
    return cert.public_bytes(serialization.Encoding.DER)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of ``key``, as ``ssl.SSLContext.load_cert_chain`` reads it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode from the start (never briefly world-readable),
    # then renamed over the target so readers see the old or the new file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tls_files(key: Ed25519PrivateKey, der: bytes, directory: Path) -> tuple[Path, Path]:
    """Write the certificate and key as PEM for ``load_cert_chain``; return (cert, key).

    Files are named by key id (``cocoon-<key_id>.crt.pem``, ``.key.pem``); the
    key file is mode 0600. Raises CertificateError("key_mismatch") if ``der``
    is not a certificate for ``key``.
    """
    cert_pem = write_pem(der)
    cert_key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(cert_key, Ed25519PublicKey) or raw_public_key(cert_key) != raw_public_key(
        key
    ):
        raise CertificateError("key_mismatch", "certificate is not for this private key")
    kid = key_id(raw_public_key(key))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"cocoon-{kid}.crt.pem"
    key_path = directory / f"cocoon-{kid}.key.pem"
    _write_file_atomically(key_path, private_key_pem(key), 0o600)
    _write_file_atomically(cert_path, cert_pem, 0o644)
    return cert_path, key_path
