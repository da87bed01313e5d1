"""`cocoon bot`: the aiogram bot and dispatcher around CocoonBot, polling Telegram
(or the Bot API server `api_server` names) until stopped."""

from __future__ import annotations

import logging

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.utils.token import TokenValidationError, validate_token

from .config import BotConfig
from .errors import BotError
from .gateway_client import GatewayClient
from .handlers import CocoonBot

log = logging.getLogger(__name__)


def check_config(config: BotConfig) -> None:
    """BotError with a one-line reason when the bot cannot start."""
    if not config.token:
        raise BotError(
            "no bot token: set COCOON_BOT_TOKEN (from @BotFather), `token` in the "
            "config file, or --token"
        )
    try:
        validate_token(config.token)
    except TokenValidationError:
        raise BotError("the bot token is malformed (expected <digits>:<secret>)") from None


def make_bot(config: BotConfig) -> Bot:
    """The aiogram Bot, on Telegram's servers or on `config.api_server`."""
    check_config(config)
    session = (
        AiohttpSession(api=TelegramAPIServer.from_base(config.api_server))
        if config.api_server
        else AiohttpSession()
    )
    return Bot(config.token, session=session)


class BotRunner:
    """The bot, its dispatcher and its gateway client, started and stopped together."""

    def __init__(self, config: BotConfig) -> None:
        self.config = config
        self.bot = make_bot(config)
        self.gateway = GatewayClient(config.gateway, config.api_key)
        self.cocoon = CocoonBot(config, self.gateway)
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(self.cocoon.router())

    async def run(self, *, handle_signals: bool = True, polling_timeout: int = 30) -> None:
        """Poll for updates until stopped (a signal, or `stop()`)."""
        if not self.config.allowed_users:
            log.warning("no allowed_users: anyone who finds the bot can spend this wallet")
        try:
            await self.dispatcher.start_polling(
                self.bot,
                handle_signals=handle_signals,
                polling_timeout=polling_timeout,
                allowed_updates=["message", "callback_query"],
            )
        finally:
            await self.gateway.close()
            await self.bot.session.close()

    async def stop(self) -> None:
        await self.dispatcher.stop_polling()
