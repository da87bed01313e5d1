"""The client's request tag: bound to every field it covers, and its key to the wallet."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.payments.request_auth import (
    TAG_BYTES,
    RequestTagger,
    auth_key,
    request_tag,
    tag_matches,
)


@dataclasses.dataclass(frozen=True)
class Fields:
    network_id: int = -239
    channel: str = "0:" + "ab" * 32
    request_id: str = "0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4"
    request_hash: bytes = b"\x11" * 32
    max_coefficient_milli: int = 1500
    signers: tuple[bytes, ...] = (b"\x01" * 32, b"\x02" * 32)


KEY = auth_key(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))


def tag(fields: Fields, key: bytes = KEY) -> bytes:
    return request_tag(key, **dataclasses.asdict(fields))


def test_a_tag_is_short_and_stable_for_one_wallet() -> None:
    same_wallet = auth_key(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    assert len(tag(Fields())) == TAG_BYTES
    assert tag(Fields(), same_wallet) == tag(Fields())  # survives a restart
    other_wallet = auth_key(Ed25519PrivateKey.from_private_bytes(b"\x08" * 32))
    assert tag(Fields(), other_wallet) != tag(Fields())


@pytest.mark.parametrize(
    "change",
    [
        {"network_id": -3},
        {"channel": "0:" + "cd" * 32},
        {"request_id": "0193a1b2c3d4e5f6a7b8c9d0e1f2a3b5"},
        {"request_hash": b"\x12" + b"\x11" * 31},
        {"max_coefficient_milli": 1501},
        {"signers": (b"\x01" * 32,)},
        {"signers": (b"\x02" * 32, b"\x01" * 32)},
        {"signers": (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)},
    ],
)
def test_any_field_changed_changes_the_tag(change: dict[str, object]) -> None:
    original = tag(Fields())
    changed = tag(dataclasses.replace(Fields(), **change))  # type: ignore[arg-type]
    assert not tag_matches(original, changed)


def test_only_a_whole_tag_matches() -> None:
    good = tag(Fields())
    assert tag_matches(good, good)
    assert not tag_matches(good[:-1], good[:-1])
    assert not tag_matches(b"", b"")


def test_a_tagger_makes_the_very_tags_of_request_tag() -> None:
    """The client's cached tagger and the reference function agree on every field, so
    tags made before and after a restart (or by either) are the same."""
    fields = Fields()
    tagger = RequestTagger(KEY, network_id=fields.network_id, channel=fields.channel)
    variants = [
        Fields(),
        Fields(request_id="0193a1b2c3d4e5f6a7b8c9d0e1f2a3b5"),
        Fields(request_hash=b"\x12" * 32),
        Fields(max_coefficient_milli=1501),
        Fields(signers=(b"\x02" * 32, b"\x01" * 32)),
        Fields(signers=(b"\x01" * 32,)),
        Fields(),  # a set of workers seen before: from the cache
    ]
    for f in variants:
        made = tagger.tag(f.request_id, f.request_hash, f.max_coefficient_milli, list(f.signers))
        assert made == tag(f)
    # Past its bound the cache starts again, and the tags stay the same.
    small = RequestTagger(KEY, network_id=fields.network_id, channel=fields.channel)
    small.SIGNER_SETS = 2
    for f in variants:
        assert small.tag(f.request_id, f.request_hash, f.max_coefficient_milli, f.signers) == tag(f)
