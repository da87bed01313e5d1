"""The SEV-SNP certificate chain: VCEK ← ASK ← ARK, the ARK pinned per product.

:func:`parse_vcek` reads a VCEK (or VLEK) certificate with the DER reader of
:mod:`cocoon.tee.der`, not with ``cryptography``'s X.509 loader: AMD issues
them with serial number 0, which ``cryptography`` warns about today and will
refuse in a future release (see that module). The VCEK's signature (RSASSA-PSS
with SHA-384 by the ASK) is checked here over its to-be-signed bytes.

:func:`verify_chain` establishes, at ``now``:

1. the ARK is one of the pinned roots (:mod:`cocoon.tee.snp_roots`, or the
   simulated PKI's), which names the product (Milan, Genoa, Turin);
2. the ASK is signed by that ARK, the ARK by itself, both valid at ``now``;
3. the VCEK is signed by the ASK, names it as issuer, is valid at ``now`` and
   its product name extension is of the same product;
4. when a CRL is given: it is signed by the ARK, current at ``now``, and does
   not revoke the ASK.

Every failure is EvidenceError "chain_invalid" with the step in the message.
The order of the chain is part of the check: the ASK first, then the ARK, as
AMD's key distribution service serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cocoon.tee import der
from cocoon.tee.errors import AttestationError, EvidenceError
from cocoon.tee.snp_report import PRODUCTS, TURIN, compose_tcb

RSASSA_PSS = "1.2.840.113549.1.1.10"
SHA384 = "2.16.840.1.101.3.4.2.2"
KDS_PREFIX = "1.3.6.1.4.1.3704.1."
KDS_PRODUCT_NAME = KDS_PREFIX + "2"
KDS_HWID = KDS_PREFIX + "4"
# KDS specification, "VCEK Certificate Extensions": the security patch levels.
KDS_TCB = {
    KDS_PREFIX + "3.1": "bootloader",
    KDS_PREFIX + "3.2": "tee",
    KDS_PREFIX + "3.3": "snp",
    KDS_PREFIX + "3.8": "microcode",
    KDS_PREFIX + "3.9": "fmc",
}
SUBJECT_CN = "2.5.4.3"

Roots = Mapping[str, tuple[x509.Certificate, x509.Certificate]]
"""Product → (ASK, ARK): the pinned chains a verifier trusts."""


def _invalid(message: str) -> EvidenceError:
    return EvidenceError("chain_invalid", message)


@dataclass(frozen=True)
class Vcek:
    """The parts of a VCEK certificate the verifier needs, read from its DER."""

    der: bytes
    tbs: bytes
    signature_algorithm: str
    signature_hash: str
    salt_length: int
    signature: bytes
    issuer: bytes
    """The issuer Name, DER, compared byte for byte with the ASK's subject."""
    subject_cn: str
    not_before: int
    not_after: int
    public_key: ec.EllipticCurvePublicKey
    product_name: str
    """E.g. "Milan-B0"."""
    hwid: bytes
    """The chip id the VCEK belongs to (64 bytes; 8 for Turin)."""
    tcb: dict[str, int] = field(default_factory=dict)
    """Patch levels from the extensions, by component name."""

    def tcb_version(self, product: str) -> int:
        """The TCB_VERSION these extensions stand for, in the product's layout."""
        return compose_tcb(self.tcb, product)


def _pss_params(params: bytes) -> tuple[str, int]:
    """(hash OID, salt length) of RSASSA-PSS-params; defaults per RFC 4055 are SHA-1/20."""
    hash_oid, salt = "1.3.14.3.2.26", 20
    for item in der.children(params):
        if item.tag == 0xA0:
            hash_oid = der.oid(next(der.children(der.read_one(item.content).content)))
        elif item.tag == 0xA2:
            salt = der.integer(der.read_one(item.content))
    return hash_oid, salt


def _name_cn(name: bytes) -> str:
    for rdn in der.children(name):
        for attribute in der.children(rdn.content):
            parts = list(der.children(attribute.content))
            if len(parts) == 2 and der.oid(parts[0]) == SUBJECT_CN:
                return parts[1].content.decode("utf-8", errors="replace")
    return ""


def _extensions(tlv: der.Tlv) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for ext in der.children(der.read_one(tlv.content, der.SEQUENCE).content):
        parts = list(der.children(ext.content))
        key = der.oid(parts[0])
        if key in out:
            raise der.DerError(f"extension {key} twice")
        out[key] = der.expect(parts[-1], der.OCTET_STRING, "extension value").content
    return out


def parse_vcek(data: bytes) -> Vcek:
    """Read a VCEK/VLEK certificate (DER); raise EvidenceError("chain_invalid")."""
    try:
        return _parse_vcek(bytes(data))
    except (der.DerError, StopIteration, IndexError, ValueError, UnsupportedAlgorithm) as exc:
        raise _invalid(f"the VCEK is not a readable certificate: {exc}") from None


def _parse_vcek(data: bytes) -> Vcek:
    cert = der.read_one(data, der.SEQUENCE)
    tbs, algorithm, signature = der.children(cert.content)
    sig_alg = list(der.children(der.expect(algorithm, der.SEQUENCE, "algorithm").content))
    alg_oid = der.oid(sig_alg[0])
    hash_oid, salt = _pss_params(sig_alg[1].content) if alg_oid == RSASSA_PSS else ("", 0)
    bits = der.expect(signature, der.BIT_STRING, "signature").content
    if not bits or bits[0] != 0:
        raise der.DerError("signature bit string has unused bits")
    fields = list(der.children(der.expect(tbs, der.SEQUENCE, "tbsCertificate").content))
    if fields[0].tag == 0xA0:  # [0] version
        fields = fields[1:]
    der.integer(fields[0], "serial")  # zero for AMD's VCEKs; read, never judged
    issuer, validity, subject, spki = fields[2], fields[3], fields[4], fields[5]
    not_before, not_after = (der.time_value(t) for t in der.children(validity.content))
    extensions: dict[str, bytes] = {}
    for item in fields[6:]:
        if item.tag == 0xA3:
            extensions = _extensions(item)
    public_key = serialization.load_der_public_key(spki.raw)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP384R1
    ):
        raise der.DerError("the VCEK's key is not ECDSA P-384")
    tcb = {
        name: der.integer(der.read_one(extensions[oid_]))
        for oid_, name in KDS_TCB.items()
        if oid_ in extensions
    }
    if KDS_PRODUCT_NAME not in extensions:
        raise der.DerError("no product name extension (not an AMD VCEK)")
    product_name = der.read_one(extensions[KDS_PRODUCT_NAME], der.IA5_STRING).content.decode()
    return Vcek(
        der=data,
        tbs=tbs.raw,
        signature_algorithm=alg_oid,
        signature_hash=hash_oid,
        salt_length=salt,
        signature=bits[1:],
        issuer=issuer.raw,
        subject_cn=_name_cn(subject.content),
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        product_name=product_name,
        # The KDS writes the raw chip id as the extension's value (no inner DER).
        hwid=extensions.get(KDS_HWID, b""),
        tcb=tcb,
    )


def load_chain(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more) or a single DER; raise chain_invalid."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise _invalid(f"the chain is not PEM or DER certificates: {exc}") from None


def _valid_at(cert: x509.Certificate, now: int, what: str) -> None:
    start = int(cert.not_valid_before_utc.timestamp())
    end = int(cert.not_valid_after_utc.timestamp())
    if not start <= now <= end:
        raise _invalid(f"the {what} is valid from {start} to {end}, not at {now}")


def _verify_issued(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise _invalid(f"{what}: {exc or 'bad signature'}") from None


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pinned(ark: x509.Certificate, roots: Roots) -> str:
    # The key is what is pinned: trust comes from it (the self-signature is
    # checked next), and RSA-PSS signatures differ at each signing, so the same
    # simulated root re-signed in another process has other bytes.
    ark_key = _spki(ark)
    for product, (_ask, pinned) in roots.items():
        if _spki(pinned) == ark_key and pinned.subject == ark.subject:
            return product
    raise _invalid(f"the ARK ({ark.subject.rfc4514_string()}) is not a pinned AMD root")


def _split_chain(
    chain: list[x509.Certificate], vcek: Vcek, roots: Roots
) -> tuple[x509.Certificate, x509.Certificate, str]:
    """(ASK, ARK, product) from a presented chain, or from the pins when it is empty."""
    if not chain:
        for product, (ask, ark) in roots.items():
            if ask.subject.public_bytes() == vcek.issuer:
                return ask, ark, product
        raise _invalid("no chain given and no pinned ASK issued this VCEK")
    if len(chain) > 2:
        raise _invalid(f"the chain has {len(chain)} certificates; expected the ASK then the ARK")
    if chain[0].issuer == chain[0].subject:
        raise _invalid(
            f"the chain starts with the self-signed {chain[0].subject.rfc4514_string()};"
            " expected the ASK first, then the ARK (wrong order?)"
        )
    ask = chain[0]
    if len(chain) == 2:
        ark = chain[1]
        product = _pinned(ark, roots)
    else:
        found = [(p, a) for p, (_s, a) in roots.items() if a.subject == ask.issuer]
        if not found:
            raise _invalid(f"no pinned ARK issued {ask.subject.rfc4514_string()}")
        product, ark = found[0]
    return ask, ark, product


def verify_vcek_signature(vcek: Vcek, ask: x509.Certificate) -> None:
    """The ASK signed the VCEK (RSASSA-PSS, SHA-384, as AMD issues them)."""
    if vcek.issuer != ask.subject.public_bytes():
        raise _invalid(
            f"the VCEK's issuer is not {ask.subject.rfc4514_string()} (a VCEK of another product?)"
        )
    if vcek.signature_algorithm != RSASSA_PSS or vcek.signature_hash != SHA384:
        raise _invalid(
            f"the VCEK is signed with {vcek.signature_algorithm}/{vcek.signature_hash},"
            " not RSASSA-PSS with SHA-384"
        )
    key = ask.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _invalid("the ASK's key is not RSA")
    try:
        key.verify(
            vcek.signature,
            vcek.tbs,
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=vcek.salt_length),
            hashes.SHA384(),
        )
    except (InvalidSignature, ValueError):
        # ValueError: PSS parameters no key could use (a negative or oversized salt).
        raise _invalid("the VCEK's signature does not verify with the ASK") from None


def read_crl_file(path: str) -> bytes | None:
    """The CRL a node keeps for its SNP peers (`tee.snp_crl_file`); None when it keeps
    none. AttestationError "crl_unavailable" if the file cannot be read."""
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AttestationError(
            "crl_unavailable", f"cannot read tee.snp_crl_file {path}: {exc.strerror}"
        ) from None


def check_crl(crl_data: bytes, ask: x509.Certificate, ark: x509.Certificate, now: int) -> None:
    """The ARK's CRL (DER or PEM) is genuine, current, and does not revoke the ASK."""
    try:
        if b"-----BEGIN" in crl_data:
            crl = x509.load_pem_x509_crl(crl_data)
        else:
            crl = x509.load_der_x509_crl(crl_data)
    except ValueError as exc:
        raise _invalid(f"the CRL does not parse: {exc}") from None
    if crl.issuer != ark.subject:
        raise _invalid(f"the CRL is issued by {crl.issuer.rfc4514_string()}, not the ARK")
    public = ark.public_key()
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _invalid("the ARK's key cannot check a CRL")
    try:
        valid = crl.is_signature_valid(public)
    except (UnsupportedAlgorithm, ValueError, TypeError):
        valid = False
    if not valid:
        raise _invalid("the CRL's signature does not verify with the ARK")
    next_update = crl.next_update_utc
    if next_update is not None and now > int(next_update.timestamp()):
        raise _invalid(f"the CRL expired at {int(next_update.timestamp())} (now {now})")
    if crl.get_revoked_certificate_by_serial_number(ask.serial_number) is not None:
        raise _invalid(f"the ASK (serial {ask.serial_number}) is revoked by the CRL")


@dataclass(frozen=True)
class VerifiedChain:
    """A VCEK established through a pinned ARK."""

    product: str
    vcek: Vcek
    ask: x509.Certificate
    ark: x509.Certificate


def verify_chain(
    vcek_der: bytes,
    chain: list[x509.Certificate],
    now: int,
    roots: Roots,
    *,
    crl: bytes | None = None,
) -> VerifiedChain:
    """Establish the VCEK through a pinned ARK at ``now`` (see the module doc)."""
    vcek = parse_vcek(vcek_der)
    ask, ark, product = _split_chain(chain, vcek, roots)
    if ark.issuer != ark.subject:
        raise _invalid("the ARK is not self-signed")
    _verify_issued(ark, ark, "the ARK's self-signature does not verify")
    _verify_issued(ask, ark, "the ASK is not signed by the pinned ARK")
    _valid_at(ark, now, "ARK")
    _valid_at(ask, now, "ASK")
    verify_vcek_signature(vcek, ask)
    if not vcek.not_before <= now <= vcek.not_after:
        raise _invalid(f"the VCEK is valid from {vcek.not_before} to {vcek.not_after}, not {now}")
    if vcek.product_name.split("-")[0] != product:
        raise _invalid(f"a {vcek.product_name} VCEK under the {product} ARK")
    if crl is not None:
        check_crl(crl, ask, ark, now)
    return VerifiedChain(product=product, vcek=vcek, ask=ask, ark=ark)


def check_vcek_binds(verified: VerifiedChain, chip_id: bytes | None, reported_tcb: int) -> None:
    """The VCEK is the one of this chip at this TCB (AMD derives one per chip and TCB).

    ``chip_id`` None: the report masks it (MASK_CHIP_KEY), only the TCB is compared.
    """
    vcek = verified.vcek
    hwid = vcek.hwid
    # Turin VCEKs name the chip by the first 8 bytes of its id.
    if chip_id is None:
        pass
    elif (
        not hwid or chip_id[: len(hwid)] != hwid or (verified.product != TURIN and len(hwid) != 64)
    ):
        raise _invalid(
            f"the VCEK is for chip {hwid.hex()[:16]}…, the report is from {chip_id.hex()[:16]}…"
        )
    expected = vcek.tcb_version(verified.product)
    if expected != reported_tcb:
        raise _invalid(
            f"the VCEK is for TCB {expected:#018x},"
            f" the report's reported_tcb is {reported_tcb:#018x}"
        )


__all__ = [
    "PRODUCTS",
    "Roots",
    "Vcek",
    "VerifiedChain",
    "check_crl",
    "check_vcek_binds",
    "load_chain",
    "parse_vcek",
    "verify_chain",
    "verify_vcek_signature",
]
