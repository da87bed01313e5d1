"""Sending one streamed answer to a chat: a placeholder message, then edits as the
text grows (streaming.EditPlan decides which and when), then the whole answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import Message

from .errors import GatewayError
from .gateway_client import AnswerStream
from .streaming import PLACEHOLDER, Edit, EditPlan

log = logging.getLogger(__name__)

# Waiting out Telegram's flood control for the final text, at most this long.
MAX_RETRY_AFTER_S = 30


class AnswerMessages:
    """The messages that show one answer in a chat."""

    def __init__(self, bot: Bot, chat_id: int, interval_s: float) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.plan = EditPlan(interval_s)
        self.messages: list[Message] = []

    async def start(self, reply_to: Message) -> None:
        """Show that an answer is coming."""
        # "typing…" is cosmetic: a Bot API server that refuses it, or lacks the
        # method, must not cost the answer.
        with contextlib.suppress(TelegramAPIError):
            await self.bot.send_chat_action(self.chat_id, ChatAction.TYPING)
        self.messages.append(await reply_to.reply(PLACEHOLDER))

    async def stream(self, answer: AnswerStream) -> str:
        """Show the answer as it comes; return its whole text. GatewayError from the
        middle of the answer is shown after the text received so far, then raised."""
        text = ""
        try:
            async for piece in answer.texts():
                text += piece
                for edit in self.plan.progress(text, time.monotonic()):
                    await self._apply(edit, final=False)
        except GatewayError as exc:
            await self.finish(f"{text}\n\n⚠ The answer was cut: {exc}" if text else f"⚠ {exc}")
            raise
        await self.finish(text or "(the model gave an empty answer)")
        return text

    async def finish(self, text: str) -> None:
        """Show `text` as the final state of the answer."""
        for edit in self.plan.finish(text):
            await self._apply(edit, final=True)

    async def _apply(self, edit: Edit, *, final: bool) -> None:
        for _ in range(2):
            try:
                if edit.index < len(self.messages):
                    await self.bot.edit_message_text(
                        text=edit.text,
                        chat_id=self.chat_id,
                        message_id=self.messages[edit.index].message_id,
                    )
                else:
                    self.messages.append(await self.bot.send_message(self.chat_id, edit.text))
            except TelegramRetryAfter as exc:
                # Flood control: a step of the stream can be skipped (a later edit
                # shows more); the final text is worth waiting for.
                if not final or exc.retry_after > MAX_RETRY_AFTER_S:
                    return
                await asyncio.sleep(exc.retry_after)
                continue
            except TelegramBadRequest as exc:
                if "not modified" not in exc.message:
                    log.warning("chat %d: edit refused: %s", self.chat_id, exc.message)
                    return
            self.plan.done(edit)
            return
