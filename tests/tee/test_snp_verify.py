"""SEV-SNP verification on the real Milan vector and the simulated AMD PKI: signature,
chain to a pinned ARK, the VCEK's binding to chip and TCB, the CRL; each failure with
its reason."""

from __future__ import annotations

import datetime
import time
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cocoon.tee.errors import AttestationError, EvidenceError, PolicyError
from cocoon.tee.sim_snp import SimSnpProvider, SimulatedAmdPki, platform_for_image, shared_pki
from cocoon.tee.snp_certs import load_chain, parse_vcek, verify_chain
from cocoon.tee.snp_policy import SnpPolicy, check_snp_report, verify_report_signature
from cocoon.tee.snp_report import SIGNED_LEN, parse_snp_report
from cocoon.tee.snp_roots import amd_roots

from .vectors import SNP_AFTER_VCEK, SNP_VECTOR_TIME, snp_chain, snp_report, snp_vcek

NOW = SNP_VECTOR_TIME
# The vector is a debug guest: a policy check would refuse it after the
# signatures held; these tests are about the signatures, so they stop there.
ROOTS = amd_roots()


def _verify_real(raw: bytes, *, vcek: bytes | None = None, chain: bytes | None = None) -> None:
    certs = load_chain(snp_chain() if chain is None else chain)
    verified = verify_chain(snp_vcek() if vcek is None else vcek, certs, NOW, ROOTS)
    verify_report_signature(parse_snp_report(raw), verified.vcek.public_key)


def test_the_real_vector_verifies_without_deprecation_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the zero serial must not go through x509 loading
        _verify_real(snp_report())
        chain = verify_chain(snp_vcek(), load_chain(snp_chain()), NOW, ROOTS)
    assert chain.product == "Milan"
    vcek = parse_vcek(snp_vcek())
    assert vcek.product_name == "Milan-B0" and vcek.subject_cn == "SEV-VCEK"
    assert vcek.tcb == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert vcek.hwid == parse_snp_report(snp_report()).chip_id


def test_the_real_vector_with_the_pinned_chain_alone() -> None:
    verified = verify_chain(snp_vcek(), [], NOW, ROOTS)
    assert verified.product == "Milan"


def test_the_real_vector_is_refused_only_for_its_debug_policy() -> None:
    with pytest.raises(PolicyError) as info:
        check_snp_report(
            snp_report(),
            vcek=snp_vcek(),
            chain=snp_chain(),
            now=NOW,
            policy=SnpPolicy(),
            expected_report_data=None,
            roots=ROOTS,
        )
    assert info.value.reason == "debug_guest"


def test_every_byte_flip_of_the_signed_area_fails() -> None:
    raw = snp_report()
    chain = verify_chain(snp_vcek(), load_chain(snp_chain()), NOW, ROOTS)
    started = time.perf_counter()
    reasons: set[str] = set()
    for offset in range(SIGNED_LEN):
        flipped = bytearray(raw)
        flipped[offset] ^= 0x01
        with pytest.raises(EvidenceError) as info:
            verify_report_signature(parse_snp_report(bytes(flipped)), chain.vcek.public_key)
        reasons.add(info.value.reason)
    assert reasons == {"bad_signature", "malformed"}
    # 672 parses and P-384 verifications: about 0.5 s on one core.
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize("offset", [0x2A0, 0x2A0 + 40, 0x2E8, 0x2E8 + 71])
def test_a_changed_signature_fails(offset: int) -> None:
    raw = bytearray(snp_report())
    raw[offset] ^= 0x80
    with pytest.raises(EvidenceError) as info:
        _verify_real(bytes(raw))
    assert info.value.reason == "bad_signature"


def _reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(AttestationError) as info:
        call()
    return info.value.reason


def test_a_chain_in_the_wrong_order_is_chain_invalid() -> None:
    ask, ark = load_chain(snp_chain())
    swapped = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ark, ask))
    with pytest.raises(EvidenceError) as info:
        _verify_real(snp_report(), chain=swapped)
    assert info.value.reason == "chain_invalid" and "wrong order" in str(info.value)


def test_the_chain_given_as_the_vcek_is_chain_invalid() -> None:
    ask_der = load_chain(snp_chain())[0].public_bytes(serialization.Encoding.DER)
    assert _reason(lambda: _verify_real(snp_report(), vcek=ask_der)) == "chain_invalid"


def test_another_products_chain_is_chain_invalid() -> None:
    genoa_ask, genoa_ark = ROOTS["Genoa"]
    genoa = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (genoa_ask, genoa_ark))
    with pytest.raises(EvidenceError) as info:
        _verify_real(snp_report(), chain=genoa)
    assert info.value.reason == "chain_invalid"


def test_an_unpinned_ark_is_chain_invalid() -> None:
    sim = shared_pki()
    with pytest.raises(EvidenceError) as info:
        _verify_real(snp_report(), chain=sim.chain_pem)
    assert info.value.reason == "chain_invalid" and "not a pinned AMD root" in str(info.value)


def test_a_simulated_vcek_under_amds_roots_is_chain_invalid() -> None:
    sim = SimSnpProvider()
    assert _reason(lambda: _verify_real(snp_report(), vcek=sim.vcek, chain=b"")) == "chain_invalid"


def test_an_expired_vcek_is_chain_invalid() -> None:
    with pytest.raises(EvidenceError) as info:
        verify_chain(snp_vcek(), load_chain(snp_chain()), SNP_AFTER_VCEK, ROOTS)
    assert info.value.reason == "chain_invalid" and "VCEK is valid" in str(info.value)


def _sim_check(provider: SimSnpProvider, raw: bytes, **changes: object) -> None:
    args: dict[str, object] = {
        "vcek": provider.vcek,
        "chain": provider.pki.chain_pem,
        "now": NOW,
        "policy": SnpPolicy(),
        "expected_report_data": None,
        "roots": provider.pki.roots,
    }
    args.update(changes)
    check_snp_report(raw, **args)  # type: ignore[arg-type]


def test_a_vcek_from_another_chip_is_bad_signature() -> None:
    chip_a = SimSnpProvider(platform=platform_for_image("x", chip="a"))
    chip_b = SimSnpProvider(platform=platform_for_image("x", chip="b"))
    raw = chip_a.report(bytes(64))
    _sim_check(chip_a, raw)
    assert _reason(lambda: _sim_check(chip_a, raw, vcek=chip_b.vcek)) == "bad_signature"


def test_a_vcek_for_another_tcb_is_chain_invalid() -> None:
    provider = SimSnpProvider()
    raw = provider.report(bytes(64))
    newer = provider.pki.vcek(provider.platform.chip_id, {**provider.platform.tcb, "snp": 23})
    # Another TCB, another key: the signature fails before the TCB is compared.
    assert _reason(lambda: _sim_check(provider, raw, vcek=newer)) == "bad_signature"


def test_the_simulated_pki_is_a_function_of_its_seed() -> None:
    again = SimulatedAmdPki()
    assert again.ark_key.private_numbers() == shared_pki().ark_key.private_numbers()
    # RSA-PSS is salted: the certificate bytes differ, the pinned key does not.
    provider = SimSnpProvider()
    _sim_check(provider, provider.report(bytes(64)), chain=again.chain_pem)
    assert SimulatedAmdPki(b"other").ark_key.public_key() != shared_pki().ark_key.public_key()


def _crl(pki: SimulatedAmdPki, *, revoke: bool, next_update: int) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ark.subject)
        .last_update(datetime.datetime.fromtimestamp(NOW - 86400, tz=datetime.UTC))
        .next_update(datetime.datetime.fromtimestamp(next_update, tz=datetime.UTC))
    )
    if revoke:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(pki.ask.serial_number)
            .revocation_date(datetime.datetime.fromtimestamp(NOW - 3600, tz=datetime.UTC))
            .build()
        )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    crl = builder.sign(pki.ark_key, hashes.SHA384(), rsa_padding=pss)
    return crl.public_bytes(serialization.Encoding.DER)


def test_crl_current_passes_revoked_and_expired_fail() -> None:
    provider = SimSnpProvider()
    raw = provider.report(bytes(64))
    pki = provider.pki
    _sim_check(provider, raw, crl=_crl(pki, revoke=False, next_update=NOW + 86400))
    revoked = _crl(pki, revoke=True, next_update=NOW + 86400)
    with pytest.raises(EvidenceError) as info:
        _sim_check(provider, raw, crl=revoked)
    assert info.value.reason == "chain_invalid" and "revoked" in str(info.value)
    expired = _crl(pki, revoke=False, next_update=NOW - 60)
    assert _reason(lambda: _sim_check(provider, raw, crl=expired)) == "chain_invalid"
    assert _reason(lambda: _sim_check(provider, raw, crl=b"not a crl")) == "chain_invalid"
    # A CRL signed by another ARK.
    other = _crl(SimulatedAmdPki(b"other"), revoke=False, next_update=NOW + 86400)
    assert _reason(lambda: _sim_check(provider, raw, crl=other)) == "chain_invalid"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_vcek_bytes_raise_only_attestation_errors(data: bytes) -> None:
    with pytest.raises(AttestationError):
        _verify_real(snp_report(), vcek=data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1359), st.integers(1, 255))
@example(offset=837, xor=128)  # the PSS salt length turned negative: was a ValueError
def test_a_changed_vcek_byte_is_refused_with_a_typed_error(offset: int, xor: int) -> None:
    vcek = bytearray(snp_vcek())
    vcek[offset] ^= xor
    try:
        _verify_real(snp_report(), vcek=bytes(vcek))
    except AttestationError as exc:
        assert exc.reason in ("chain_invalid", "bad_signature")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_random_chain_bytes_raise_only_attestation_errors(data: bytes) -> None:
    with pytest.raises(AttestationError):
        _verify_real(snp_report(), chain=b"-----BEGIN" + data)
