"""`cocoon bot`'s configuration: TOML (`--config`), then COCOON_BOT_* variables
(COCOON_BOT_TOKEN, COCOON_BOT_ALLOWED_USERS=1,2, ...), then flags."""

from __future__ import annotations

from typing import Annotated

import msgspec


class BotConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A Telegram bot that answers through a local client gateway."""

    # The bot's token from @BotFather; "": `cocoon bot` refuses to start.
    token: str = ""
    # Telegram user ids allowed to talk to the bot; empty: everyone (the bot spends
    # the gateway's wallet, so name the users on a public bot).
    allowed_users: list[int] = msgspec.field(default_factory=list)
    # The client gateway's OpenAI base URL, and its bearer key ("": none).
    gateway: str = "http://127.0.0.1:8080/v1"
    api_key: str = ""
    # The web app's public URL, opened as the Mini App from /receipt ("": the
    # gateway's own root; Telegram opens only https:// URLs as Mini Apps).
    web_url: str = ""
    # The Bot API server ("": Telegram's; a local telegram-bot-api server's URL).
    api_server: str = ""
    # The model of a new conversation ("": the first the gateway lists).
    model: str = ""
    system_prompt: str = "You are a helpful assistant. Answer briefly and plainly."
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 512
    # Messages of a conversation sent again with each question (the oldest go first).
    history_messages: Annotated[int, msgspec.Meta(ge=1)] = 20
    # Seconds between two edits of a streamed answer: Telegram allows about one
    # edit a second in a chat before it answers 429.
    edit_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    # Documents: the largest file read (Telegram's getFile stops at 20 MB), and
    # the most characters of its text put in the prompt (the model's context is small).
    document_max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 20 * 1024 * 1024
    document_max_chars: Annotated[int, msgspec.Meta(ge=1)] = 6000
    # Per Telegram user: questions a minute (0: no limit) and nanotons per window (0: no cap).
    requests_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 20
    spend_cap_nano: Annotated[int, msgspec.Meta(ge=0)] = 0
    spend_window_s: Annotated[float, msgspec.Meta(gt=0)] = 86_400.0

    @property
    def mini_app_url(self) -> str:
        """The web app's root URL, without a trailing slash."""
        if self.web_url:
            return self.web_url.rstrip("/")
        return self.gateway.rstrip("/").removesuffix("/v1")
