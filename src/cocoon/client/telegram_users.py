"""The gateway's door for Telegram users: the web app opened as a Telegram Mini App
sends Telegram's signed `initData` with each request, and the user it names gets
per-user limits (client/user_limits.py).

A request carries initData in `X-Telegram-Init-Data`, or as `Authorization: tma
<initData>` (the Mini App convention). When the gateway has a bot token, a valid
initData admits the request in place of an API key: a Mini App in a browser has
no key to hold, and the user is known instead. Invalid initData is refused (401),
never ignored, so that a client cannot fall back to the anonymous path by
accident. Without a bot token the headers mean nothing and are not read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

from aiohttp import web

from ..config import TelegramConfig
from ..openai_api import OpenAIError
from ..telegram_initdata import InitDataError, validate_init_data
from .calls import AnswerResult
from .user_limits import UserLimiter, UserLimitError, UserLimits

INIT_DATA_HEADER = "X-Telegram-Init-Data"
# `Authorization: tma <initData>`, as Telegram Mini App front ends send it.
AUTH_SCHEME = "tma "

TELEGRAM_USER: web.RequestKey[int] = web.RequestKey("telegram_user", int)


def init_data_of(request: web.BaseRequest) -> str | None:
    """The initData a request carries, if any."""
    given = request.headers.get(INIT_DATA_HEADER)
    if given is not None:
        return given
    authorization = request.headers.get("Authorization", "")
    if authorization[: len(AUTH_SCHEME)].lower() == AUTH_SCHEME:
        return authorization[len(AUTH_SCHEME) :].strip()
    return None


class TelegramUsers:
    """Validates initData and keeps each Telegram user within their limits."""

    def __init__(
        self,
        config: TelegramConfig,
        results: Mapping[str, AnswerResult],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.results = results
        self.clock = clock
        self.limiter = UserLimiter(
            UserLimits(
                requests_per_minute=config.requests_per_minute,
                spend_cap_nano=config.spend_cap_nano,
                spend_window_s=config.spend_window_s,
            )
        )
        self.refused_init_data: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.config.bot_token)

    def identify(self, request: web.BaseRequest) -> int | None:
        """The Telegram user a request comes from (then also `request[TELEGRAM_USER]`),
        None when it carries no initData; OpenAIError 401 when its initData is invalid."""
        if not self.enabled:
            return None
        init_data = init_data_of(request)
        if init_data is None:
            return None
        try:
            init = validate_init_data(
                init_data,
                self.config.bot_token,
                now=self.clock(),
                max_age_s=self.config.init_data_max_age_s,
            )
        except InitDataError as exc:
            self.refused_init_data[exc.reason] = self.refused_init_data.get(exc.reason, 0) + 1
            raise OpenAIError(
                401, f"Telegram initData refused: {exc.message}", code="invalid_init_data"
            ) from None
        request[TELEGRAM_USER] = init.user.id
        return init.user.id

    def may(self, route: str, method: str, generation_routes: Collection[str]) -> bool:
        """Whether initData alone admits this route: reading (GET) and asking a model.
        What moves the wallet's money (top-up, close) still needs an API key."""
        return method in ("GET", "HEAD") or route in generation_routes

    def admit(self, user_id: int) -> None:
        """Let one request of the user through, or refuse it with a 429."""
        try:
            self.limiter.admit(user_id, self.clock())
        except UserLimitError as exc:
            raise OpenAIError(
                429,
                f"{exc.message}; try again in {exc.retry_after_s:.0f} s",
                code=exc.code,
                type_="rate_limit_error" if exc.code == "rate_limit_exceeded" else "quota_error",
            ) from None

    def charge(self, user_id: int, request_id: str | None) -> None:
        """Record what the user's request cost (what its receipts made the client owe)."""
        result = self.results.get(request_id) if request_id else None
        if result is not None and result.amount_nano:
            self.limiter.charge(user_id, result.amount_nano, self.clock())

    def status(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "refused_init_data": dict(self.refused_init_data),
            "refused_requests": dict(self.limiter.refused),
        }
