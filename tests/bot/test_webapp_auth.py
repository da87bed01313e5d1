"""Telegram Mini App initData: the documented algorithm, a published vector, and
aiogram's own check as a second opinion."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest
from aiogram.utils.web_app import check_webapp_signature, safe_parse_webapp_init_data
from hypothesis import given
from hypothesis import strategies as st

from cocoon.telegram_initdata import (
    InitDataError,
    data_check_string,
    parse_fields,
    sign_init_data,
    validate_init_data,
)

# aiogram's published test vector (tests/test_utils/test_web_app.py): bot token
# "42:TEST", the initData a Mini App got, and the hash Telegram's algorithm gives.
VECTOR_TOKEN = "42:TEST"
VECTOR_AUTH_DATE = 1650385342
VECTOR = (
    "auth_date=1650385342"
    "&user=%7B%22id%22%3A42%2C%22first_name%22%3A%22Test%22%7D"
    "&query_id=test"
    "&hash=46d2ea5e32911ec8d30999b56247654460c0d20949b6277af519e76271182803"
)


def test_known_vector_validates() -> None:
    init = validate_init_data(VECTOR, VECTOR_TOKEN, now=VECTOR_AUTH_DATE + 10)
    assert init.user.id == 42
    assert init.user.first_name == "Test"
    assert init.auth_date == VECTOR_AUTH_DATE
    assert init.fields["query_id"] == "test"
    # aiogram agrees.
    assert check_webapp_signature(VECTOR_TOKEN, VECTOR)


def test_data_check_string_is_sorted_lines_without_hash() -> None:
    fields = parse_fields(VECTOR)
    assert data_check_string(fields) == (
        'auth_date=1650385342\nquery_id=test\nuser={"id":42,"first_name":"Test"}'
    )


def test_other_token_is_refused() -> None:
    with pytest.raises(InitDataError) as info:
        validate_init_data(VECTOR, "42:OTHER", now=VECTOR_AUTH_DATE)
    assert info.value.reason == "bad_hash"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        # Another user id under the same hash.
        (lambda s: s.replace("%3A42%2C", "%3A43%2C"), "bad_hash"),
        # A later auth_date (to escape expiry) under the same hash.
        (lambda s: s.replace("1650385342", "1650385999"), "bad_hash"),
        # The hash itself changed by one digit.
        (lambda s: s[:-1] + ("4" if s[-1] != "4" else "5"), "bad_hash"),
        # No hash at all.
        (lambda s: s.split("&hash=")[0], "no_hash"),
        # A field repeated: the second could hide the first.
        (lambda s: s + "&query_id=other", "malformed"),
        # Not a query string.
        (lambda s: "test&foo=bar=baz", "malformed"),
        # A hash with non-ASCII characters is just wrong, not a crash.
        (lambda s: s.split("&hash=")[0] + "&hash=%C3%A9%C3%A9", "bad_hash"),
    ],
)
def test_tampered_init_data_is_refused(tamper: object, reason: str) -> None:
    assert callable(tamper)
    with pytest.raises(InitDataError) as info:
        validate_init_data(tamper(VECTOR), VECTOR_TOKEN, now=VECTOR_AUTH_DATE)
    assert info.value.reason == reason


def test_expired_and_future_init_data_is_refused() -> None:
    with pytest.raises(InitDataError) as info:
        validate_init_data(VECTOR, VECTOR_TOKEN, now=VECTOR_AUTH_DATE + 3601, max_age_s=3600)
    assert info.value.reason == "expired"
    assert "3601 s old" in info.value.message
    # At the limit it still passes.
    validate_init_data(VECTOR, VECTOR_TOKEN, now=VECTOR_AUTH_DATE + 3600, max_age_s=3600)
    with pytest.raises(InitDataError) as info:
        validate_init_data(VECTOR, VECTOR_TOKEN, now=VECTOR_AUTH_DATE - 3600)
    assert info.value.reason == "expired"


def test_signed_without_user_or_date_is_refused() -> None:
    no_user = sign_init_data({"auth_date": "100", "query_id": "q"}, VECTOR_TOKEN)
    with pytest.raises(InitDataError) as info:
        validate_init_data(no_user, VECTOR_TOKEN, now=100)
    assert info.value.reason == "no_user"
    no_date = sign_init_data({"user": '{"id": 5}'}, VECTOR_TOKEN)
    with pytest.raises(InitDataError) as info:
        validate_init_data(no_date, VECTOR_TOKEN, now=100)
    assert info.value.reason == "no_auth_date"


def test_signature_field_is_signed_like_any_other() -> None:
    # Bot API 8.0 added `signature` (Ed25519 for third parties): the HMAC covers it.
    fields = {"auth_date": "100", "user": '{"id": 7}', "signature": "abc"}
    signed = sign_init_data(fields, VECTOR_TOKEN)
    assert validate_init_data(signed, VECTOR_TOKEN, now=100).user.id == 7
    with pytest.raises(InitDataError):
        validate_init_data(signed.replace("signature=abc", "signature=abd"), VECTOR_TOKEN, now=100)


@given(
    user_id=st.integers(min_value=1, max_value=2**52),
    name=st.text(max_size=30),
    # Telegram's query ids are URL-safe tokens; aiogram's parser reads any value
    # that starts with "{" or "[" as JSON, so free text there breaks aiogram, not us.
    query_id=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        min_size=1,
        max_size=20,
    ),
    auth_date=st.integers(min_value=1, max_value=2**31),
)
def test_our_signing_agrees_with_aiogram(
    user_id: int, name: str, query_id: str, auth_date: int
) -> None:
    token = "123456:ABC-def_ghi"
    user = json.dumps({"id": user_id, "first_name": name})
    signed = sign_init_data(
        {"auth_date": str(auth_date), "user": user, "query_id": query_id}, token
    )
    assert check_webapp_signature(token, signed)
    parsed = safe_parse_webapp_init_data(token, signed)
    assert parsed.user is not None and parsed.user.id == user_id
    init = validate_init_data(signed, token, now=auth_date)
    assert init.user.id == user_id
    # And what aiogram signs by hand (its documented algorithm) we accept: quote()
    # instead of urlencode's quote_plus changes the bytes, not the fields.
    by_hand = "&".join(f"{k}={quote(v)}" for k, v in parse_fields(signed).items())
    assert validate_init_data(by_hand, token, now=auth_date).user.id == user_id
    assert urlencode(parse_fields(signed)) == signed
