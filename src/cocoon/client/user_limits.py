"""Per-user limits for people who reach Cocoon through Telegram (the bot, or the
web app opened as a Mini App): a request rate and a spending cap per user.

The gateway's bearer keys say which app may spend from its wallet; once that
app serves many people, one of them must not spend it all. Each user gets:

- a **rate**: at most `requests_per_minute`, as a token bucket (a burst of that
  many, refilled evenly), so a script behind one account cannot flood workers;
- a **spending cap**: at most `spend_cap_nano` nanotons per `spend_window_s`.
  What an answer costs is known only once its receipt is in, so the cap is
  checked before a request and charged after it: a user can pass the cap by
  one answer's price, never more (max_tokens bounds that price).

Sans-IO: time is passed in, nothing sleeps. Users are kept in memory only,
at most `max_users`, the least recently seen dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ..recent import newest


class UserLimitError(Exception):
    """A user is over one of their limits; `code` is the OpenAI error code
    (`rate_limit_exceeded` or `spending_cap_reached`), `retry_after_s` when it passes."""

    def __init__(self, code: str, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class UserLimits:
    """How much one user may do (0: that limit is off)."""

    requests_per_minute: int = 20
    spend_cap_nano: int = 0
    spend_window_s: float = 86_400.0
    max_users: int = 100_000


@dataclass
class _User:
    tokens: float
    refilled_at: float
    # (time, amount) of each charge inside the spend window, oldest first.
    charges: deque[tuple[float, int]] = field(default_factory=deque)
    spent_nano: int = 0


class UserLimiter:
    """Admits a user's requests and records what they cost."""

    def __init__(self, limits: UserLimits) -> None:
        self.limits = limits
        self._users: OrderedDict[int, _User] = OrderedDict()
        self.refused: dict[str, int] = {}

    def _user(self, user_id: int, now: float) -> _User:
        user = newest(
            self._users,
            user_id,
            lambda: _User(tokens=float(self.limits.requests_per_minute), refilled_at=now),
            self.limits.max_users,
        )
        # Forget charges that left the window.
        while user.charges and user.charges[0][0] <= now - self.limits.spend_window_s:
            _, amount = user.charges.popleft()
            user.spent_nano -= amount
        return user

    def admit(self, user_id: int, now: float) -> None:
        """Let one request of `user_id` through at `now`, or raise UserLimitError."""
        limits = self.limits
        user = self._user(user_id, now)
        if limits.spend_cap_nano and user.spent_nano >= limits.spend_cap_nano:
            oldest = user.charges[0][0] if user.charges else now
            self._refuse(
                "spending_cap_reached",
                f"this Telegram user spent {user.spent_nano} of {limits.spend_cap_nano} "
                f"nanotons allowed per {limits.spend_window_s:g} s",
                oldest + limits.spend_window_s - now,
            )
        rate = limits.requests_per_minute
        if rate:
            per_second = rate / 60.0
            user.tokens = min(float(rate), user.tokens + (now - user.refilled_at) * per_second)
            user.refilled_at = now
            if user.tokens < 1.0:
                self._refuse(
                    "rate_limit_exceeded",
                    f"this Telegram user sent more than {rate} requests a minute",
                    (1.0 - user.tokens) / per_second,
                )
            user.tokens -= 1.0

    def charge(self, user_id: int, amount_nano: int, now: float) -> None:
        """Record what one of the user's answers cost."""
        if amount_nano <= 0:
            return
        user = self._user(user_id, now)
        user.charges.append((now, amount_nano))
        user.spent_nano += amount_nano

    def spent_nano(self, user_id: int, now: float) -> int:
        """What the user spent inside the current window."""
        return self._user(user_id, now).spent_nano if user_id in self._users else 0

    def _refuse(self, code: str, message: str, retry_after_s: float) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1
        raise UserLimitError(code, message, max(0.0, retry_after_s))
