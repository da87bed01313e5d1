from __future__ import annotations

import hashlib

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from cocoon.tee import (
    Claims,
    EvidenceError,
    canonical_bytes,
    claims_from_canonical_bytes,
    report_data,
)

from .conftest import claims_for

FIXED = Claims(
    role="proxy",
    network="main",
    tls_public_key=b"\x01" * 32,
    hpke_suite="",
    hpke_public_key=b"",
    models=["m@sha256:00"],
    version="1.2.3",
    issued_at=1_700_000_000,
)


def test_canonical_encoding_is_pinned() -> None:
    # A golden value: if this changes, every deployed report data changes with
    # it, so changing the encoding must be a deliberate, versioned decision.
    assert canonical_bytes(FIXED).hex() == (
        "99b0636f636f6f6e2d636c61696d732d7631a570726f7879a46d61696ec420"
        + "01" * 32
        + "a0c40091ab6d407368613235363a3030a5312e322e33ce6553f100"
    )


def test_report_data_is_sha512_of_canonical_bytes() -> None:
    rd = report_data(FIXED)
    assert len(rd) == 64
    assert rd == hashlib.sha512(canonical_bytes(FIXED)).digest()


def test_defaults() -> None:
    claims = Claims(
        role="client", network="n", tls_public_key=b"\x00" * 32, version="v", issued_at=0
    )
    assert claims.models == [] and claims.hpke_public_key == b"" and claims.hpke_suite == ""


def test_every_field_changes_report_data() -> None:
    key = Ed25519PrivateKey.generate()
    base = claims_for(key)
    variants = [
        msgspec.structs.replace(base, role="proxy"),
        msgspec.structs.replace(base, network="other"),
        msgspec.structs.replace(base, tls_public_key=b"\x02" * 32),
        msgspec.structs.replace(base, hpke_suite="other"),
        msgspec.structs.replace(base, hpke_public_key=b"\x03" * 32),
        msgspec.structs.replace(base, models=[]),
        msgspec.structs.replace(base, version="9"),
        msgspec.structs.replace(base, issued_at=base.issued_at + 1),
    ]
    digests = {report_data(c) for c in [base, *variants]}
    assert len(digests) == len(variants) + 1


claims_strategy = st.builds(
    Claims,
    role=st.sampled_from(["client", "proxy", "worker"]),
    network=st.text(max_size=20),
    tls_public_key=st.binary(min_size=32, max_size=32),
    hpke_suite=st.text(max_size=20),
    hpke_public_key=st.binary(max_size=64),
    models=st.lists(st.text(max_size=20), max_size=4),
    version=st.text(max_size=10),
    issued_at=st.integers(min_value=0, max_value=2**40),
)


@given(claims_strategy)
def test_canonical_roundtrip(claims: Claims) -> None:
    data = canonical_bytes(claims)
    assert canonical_bytes(claims) == data
    assert claims_from_canonical_bytes(data) == claims


def test_non_canonical_encoding_refused() -> None:
    data = canonical_bytes(FIXED)
    # issued_at re-encoded as uint64 (0xcf) instead of the minimal uint32 (0xce).
    assert data.endswith(bytes.fromhex("ce6553f100"))
    padded = data[:-5] + bytes.fromhex("cf000000006553f100")
    with pytest.raises(EvidenceError) as info:
        claims_from_canonical_bytes(padded)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        canonical_bytes(msgspec.structs.replace(FIXED, role="admin")),
        canonical_bytes(msgspec.structs.replace(FIXED, tls_public_key=b"\x01" * 31)),
        canonical_bytes(FIXED).replace(b"cocoon-claims-v1", b"cocoon-claims-v9"),
        canonical_bytes(FIXED) + b"\x00",
    ],
)
def test_malformed_claims_refused(data: bytes) -> None:
    with pytest.raises(EvidenceError) as info:
        claims_from_canonical_bytes(data)
    assert info.value.reason == "malformed"


WITH_GPU = msgspec.structs.replace(FIXED, gpu_evidence="nvidia:sha256:00")


def test_gpu_evidence_is_an_optional_trailing_element() -> None:
    # Encoding rule for optional fields: appended only when set, so claims
    # without GPU evidence keep the golden bytes above (no report data of a
    # deployed node changes), and claims with it are a 10-element array.
    assert canonical_bytes(WITH_GPU).hex() == (
        "9ab0636f636f6f6e2d636c61696d732d7631a570726f7879a46d61696ec420"
        + "01" * 32
        + "a0c40091ab6d407368613235363a3030a5312e322e33ce6553f100"
        + "b06e76696469613a7368613235363a3030"
    )
    assert claims_from_canonical_bytes(canonical_bytes(WITH_GPU)) == WITH_GPU
    assert report_data(WITH_GPU) != report_data(FIXED)


def test_explicitly_empty_gpu_evidence_is_not_canonical() -> None:
    # Ten elements with an empty last one: the same claims as nine elements,
    # so refused (one set of claims, one byte string).
    data = canonical_bytes(FIXED)
    ten = b"\x9a" + data[1:] + b"\xa0"
    with pytest.raises(EvidenceError) as info:
        claims_from_canonical_bytes(ten)
    assert info.value.reason == "malformed"


@given(claims_strategy, st.text(min_size=1, max_size=80))
def test_canonical_roundtrip_with_gpu_evidence(claims: Claims, gpu: str) -> None:
    with_gpu = msgspec.structs.replace(claims, gpu_evidence=gpu)
    data = canonical_bytes(with_gpu)
    assert claims_from_canonical_bytes(data) == with_gpu
    assert report_data(with_gpu) != report_data(claims)
