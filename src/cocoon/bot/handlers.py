"""What the bot does with each message: commands, questions, documents.

/start and /help say what the bot is; /model lists and picks the chat's model;
/new forgets the conversation; /receipt shows what ran where for the last
answer, with a button that opens it in the web app as a Telegram Mini App.
Any other text is a question, answered through the gateway and streamed by
editing one message; a text or PDF document is read here and summarised.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
    WebAppInfo,
)

from ..client.user_limits import UserLimiter, UserLimitError, UserLimits
from .config import BotConfig
from .conversations import Conversations, LastAnswer
from .documents import extract_text, summary_request
from .errors import BotError, GatewayError
from .gateway_client import GatewayClient
from .receipt_text import mini_app_url, receipt_message
from .replying import AnswerMessages

log = logging.getLogger(__name__)

HELP = """Cocoon answers here with open models running in attested enclaves (TEEs):
your messages are sealed on this side and opened only inside the worker that answers.

Send a question, or a text or PDF file to get a private summary.
/model — list the models, or /model NAME to pick one
/receipt — what ran where for the last answer (worker, image hash, tokens, price)
/new — forget this conversation
/help — this text"""

# callback_data is at most 64 bytes: a model is named by a hash of its id.
MODEL_CALLBACK = "model:"


def model_tag(model: str) -> str:
    return hashlib.sha256(model.encode()).hexdigest()[:16]


class AllowedUsers(BaseMiddleware):
    """Refuses every update from a user not in the list (an empty list allows all)."""

    def __init__(self, allowed: list[int]) -> None:
        self.allowed = frozenset(allowed)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if not self.allowed or (user is not None and user.id in self.allowed):
            return await handler(event, data)
        who = f"your Telegram id is {user.id}" if user is not None else "no user"
        refusal = f"Sorry, this bot answers only the users it was set up for ({who})."
        if isinstance(event, Message):
            await event.answer(refusal)
        elif isinstance(event, CallbackQuery):
            await event.answer(refusal, show_alert=True)
        return None


class CocoonBot:
    """The bot's behaviour; `router()` wires it to aiogram."""

    def __init__(self, config: BotConfig, gateway: GatewayClient) -> None:
        self.config = config
        self.gateway = gateway
        self.conversations = Conversations(config.history_messages)
        self.limiter = UserLimiter(
            UserLimits(
                requests_per_minute=config.requests_per_minute,
                spend_cap_nano=config.spend_cap_nano,
                spend_window_s=config.spend_window_s,
            )
        )

    def router(self) -> Router:
        router = Router(name="cocoon")
        allowed = AllowedUsers(self.config.allowed_users)
        router.message.outer_middleware(allowed)
        router.callback_query.outer_middleware(allowed)
        router.message(CommandStart())(self.help)
        router.message(Command("help"))(self.help)
        router.message(Command("new"))(self.new)
        router.message(Command("model"))(self.model)
        router.message(Command("receipt"))(self.receipt)
        router.callback_query(F.data.startswith(MODEL_CALLBACK))(self.choose_model)
        router.message(F.document)(self.document)
        router.message(F.text)(self.question)
        return router

    # -- commands -------------------------------------------------------------

    async def help(self, message: Message) -> None:
        await message.answer(HELP)

    async def new(self, message: Message) -> None:
        self.conversations.forget(message.chat.id)
        await message.answer("Conversation forgotten. The next message starts a new one.")

    async def model(self, message: Message, command: CommandObject) -> None:
        chat = self.conversations.get(message.chat.id)
        try:
            models = await self.gateway.models()
        except GatewayError as exc:
            await message.answer(f"⚠ {exc}")
            return
        wanted = (command.args or "").strip()
        if wanted:
            found = _find_model(models, wanted)
            if found is None:
                await message.answer(f"No model {wanted!r}. Models: {', '.join(models) or 'none'}")
                return
            chat.model = found
            await message.answer(f"Model: {found}")
            return
        current = chat.model or await self._default_model()
        if not models:
            await message.answer("The gateway serves no model right now.")
            return
        buttons = [
            [
                InlineKeyboardButton(
                    text=("✓ " if model == current else "") + model,
                    callback_data=MODEL_CALLBACK + model_tag(model),
                )
            ]
            for model in models
        ]
        await message.answer(
            f"Model: {current}\nChoose another:",
            reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons),
        )

    async def choose_model(self, query: CallbackQuery) -> None:
        tag = (query.data or "").removeprefix(MODEL_CALLBACK)
        try:
            models = await self.gateway.models()
        except GatewayError as exc:
            await query.answer(str(exc), show_alert=True)
            return
        chosen = next((m for m in models if model_tag(m) == tag), None)
        if chosen is None or query.message is None:
            await query.answer("That model is not served any more.", show_alert=True)
            return
        self.conversations.get(query.message.chat.id).model = chosen
        # The toast is cosmetic (the choice is made and shown below): a server that
        # refuses it must not keep the message from changing.
        with contextlib.suppress(TelegramAPIError):
            await query.answer(f"Model: {chosen}")
        if isinstance(query.message, Message):
            await query.message.edit_text(f"Model: {chosen}")

    async def receipt(self, message: Message) -> None:
        last = self.conversations.get(message.chat.id).last
        if last is None:
            await message.answer("No answer yet in this conversation: ask something first.")
            return
        try:
            details = await self.gateway.answer_details(last.request_id)
        except GatewayError as exc:
            await message.answer(f"⚠ {exc}")
            return
        url = mini_app_url(self.config.mini_app_url, last.request_id)
        text = receipt_message(details)
        button = InlineKeyboardButton(text="Open in the web app", web_app=WebAppInfo(url=url))
        try:
            await message.answer(
                text, reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]])
            )
        except TelegramBadRequest:
            # Telegram opens only https:// Mini Apps: a local gateway's page is a link.
            await message.answer(f"{text}\n\nWeb app: {url}")

    # -- questions and documents ----------------------------------------------

    async def question(self, message: Message, bot: Bot) -> None:
        text = message.text or ""
        if text.startswith("/"):
            await message.answer(f"Unknown command {text.split()[0]}. /help lists them.")
            return
        await self._answer(message, bot, text)

    async def document(self, message: Message, bot: Bot) -> None:
        document = message.document
        assert document is not None
        name = document.file_name or "document"
        if document.file_size is not None and document.file_size > self.config.document_max_bytes:
            await message.answer(
                f"⚠ {name} is {document.file_size} bytes; "
                f"at most {self.config.document_max_bytes} are read."
            )
            return
        try:
            buffer = io.BytesIO()
            await bot.download(document, destination=buffer)
            read = extract_text(
                name, document.mime_type or "", buffer.getvalue(), self.config.document_max_chars
            )
        except BotError as exc:
            await message.answer(f"⚠ {exc}")
            return
        await self._answer(message, bot, summary_request(read, message.caption or ""))

    async def _answer(self, message: Message, bot: Bot, question: str) -> None:
        user = message.from_user
        user_id = user.id if user is not None else message.chat.id
        now = time.time()
        try:
            self.limiter.admit(user_id, now)
        except UserLimitError as exc:
            await message.answer(f"⚠ {exc.message}; try again in {exc.retry_after_s:.0f} s.")
            return
        chat_id = message.chat.id
        chat = self.conversations.get(chat_id)
        messages = self.conversations.prompt(chat_id, self.config.system_prompt, question)
        shown = AnswerMessages(bot, chat_id, self.config.edit_interval_s)
        await shown.start(message)
        try:
            model = chat.model or await self._default_model()
            answer = await self.gateway.chat(
                model, messages, self.config.max_tokens, user=f"telegram:{user_id}"
            )
        except GatewayError as exc:
            await shown.finish(f"⚠ {exc}")
            return
        try:
            text = await shown.stream(answer)
        except GatewayError:
            return  # shown after what came of the answer
        last = LastAnswer(answer.request_id, model, answer.worker)
        self.conversations.answered(chat_id, question, text, last)
        if self.config.spend_cap_nano:
            await self._charge(user_id, last)

    async def _charge(self, user_id: int, last: LastAnswer) -> None:
        """Count what the answer cost against the user's cap (from the gateway's record)."""
        try:
            details = await self.gateway.answer_details(last.request_id)
        except GatewayError as exc:
            log.warning("cannot price %s: %s", last.request_id, exc)
            return
        amount = details.get("amount_nano")
        if isinstance(amount, int):
            self.limiter.charge(user_id, amount, time.time())

    async def _default_model(self) -> str:
        if self.config.model:
            return self.config.model
        models = await self.gateway.models()
        if not models:
            raise GatewayError("the gateway serves no model right now")
        return models[0]


def _find_model(models: list[str], wanted: str) -> str | None:
    """A model by its id, or by its name before `@sha256:`."""
    if wanted in models:
        return wanted
    named = [m for m in models if m.split("@", 1)[0] == wanted]
    return named[0] if len(named) == 1 else None
