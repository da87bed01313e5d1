"""Telegram Mini App `initData`: who opened the web app, as Telegram signed it.

Telegram hands a Mini App a query string (`Telegram.WebApp.initData`) and
signs it for the bot (Bot API, "Validating data received via the Mini App"):

    data_check_string = "\\n".join(sorted(f"{key}={value}" for every field but hash))
    secret_key        = HMAC_SHA256(key="WebAppData", message=bot_token)
    hash              = hex(HMAC_SHA256(key=secret_key, message=data_check_string))

Values are taken URL-decoded; a newer `signature` field (Ed25519, for third
parties) is part of the string like any other field. A valid hash proves only
that Telegram issued the string at `auth_date`: it carries no nonce, so it can
be replayed until it is refused for age (`max_age_s`), which is what bounds a
leaked string. Sans-IO: the caller passes the time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

# The HMAC key that turns a bot token into the key that signs initData.
WEB_APP_KEY = b"WebAppData"
# A day: Telegram clients reuse one initData for as long as the app stays open.
DEFAULT_MAX_AGE_S = 86_400
# Clock skew tolerated for an auth_date in the future.
FUTURE_SKEW_S = 60
# Longer initData is refused before any parsing (real ones are under 1 KiB).
MAX_INIT_DATA_CHARS = 8192


class InitDataError(Exception):
    """The initData is malformed, not signed for this bot, or too old; `reason` is a
    short code (malformed, no_hash, bad_hash, no_auth_date, expired, no_user)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TelegramUser:
    """The Telegram user who opened the Mini App."""

    id: int
    first_name: str = ""
    username: str = ""


@dataclass(frozen=True)
class WebAppInit:
    """Validated initData: the user, when it was issued, and every field as sent."""

    user: TelegramUser
    auth_date: int
    fields: dict[str, str]


def secret_key(bot_token: str) -> bytes:
    """The key Telegram signs a bot's initData with."""
    return hmac.new(WEB_APP_KEY, bot_token.encode(), hashlib.sha256).digest()


def data_check_string(fields: dict[str, str]) -> str:
    """The signed text: every field but `hash`, as `key=value` lines sorted by key."""
    return "\n".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "hash")


def init_data_hash(fields: dict[str, str], bot_token: str) -> str:
    """The hex hash Telegram puts in `hash` for these fields."""
    message = data_check_string(fields).encode()
    return hmac.new(secret_key(bot_token), message, hashlib.sha256).hexdigest()


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """An initData string for `fields`, signed as Telegram signs it (tests, and a bot
    that opens its own web app outside Telegram)."""
    signed = {key: value for key, value in fields.items() if key != "hash"}
    signed["hash"] = init_data_hash(signed, bot_token)
    return urlencode(signed)


def parse_fields(init_data: str) -> dict[str, str]:
    """The query string's fields, URL-decoded; a repeated field or a malformed pair is
    refused (Telegram never sends either, and a duplicate could hide a field)."""
    if len(init_data) > MAX_INIT_DATA_CHARS:
        raise InitDataError("malformed", f"initData is longer than {MAX_INIT_DATA_CHARS} chars")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InitDataError("malformed", "initData is not a query string") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InitDataError("malformed", "initData repeats a field")
    return fields


def validate_init_data(
    init_data: str, bot_token: str, *, now: float, max_age_s: float = DEFAULT_MAX_AGE_S
) -> WebAppInit:
    """Check initData's signature for `bot_token` and its age at `now` (Unix seconds);
    return who sent it. InitDataError says why not."""
    fields = parse_fields(init_data)
    given = fields.get("hash", "")
    if not given:
        raise InitDataError("no_hash", "initData has no hash")
    expected = init_data_hash(fields, bot_token)
    # compare_digest on bytes: a hash with non-ASCII characters is just wrong.
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape")):
        raise InitDataError("bad_hash", "initData is not signed for this bot")
    raw_date = fields.get("auth_date", "")
    if not raw_date.isdigit():
        raise InitDataError("no_auth_date", "initData has no auth_date")
    auth_date = int(raw_date)
    if auth_date > now + FUTURE_SKEW_S:
        raise InitDataError("expired", "initData's auth_date is in the future")
    if now - auth_date > max_age_s:
        raise InitDataError(
            "expired", f"initData is {int(now - auth_date)} s old (at most {int(max_age_s)} s)"
        )
    return WebAppInit(user=_user(fields.get("user", "")), auth_date=auth_date, fields=fields)


def _user(raw: str) -> TelegramUser:
    try:
        data = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise InitDataError("no_user", "initData names no user")
    user_id = data.get("id")
    # Telegram ids fit in 52 bits; some clients send them as strings.
    if isinstance(user_id, str) and user_id.isdigit():
        user_id = int(user_id)
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise InitDataError("no_user", "initData's user has no id")
    first = data.get("first_name")
    username = data.get("username")
    return TelegramUser(
        id=user_id,
        first_name=first if isinstance(first, str) else "",
        username=username if isinstance(username, str) else "",
    )
