"""A Telegram Bot API server on 127.0.0.1, for driving a bot without Telegram.

It speaks the methods a bot uses, in the Bot API's own HTTP form (POST
/bot<token>/<method> with form fields, JSON-encoded objects inside; file
downloads at /file/bot<token>/<path>; `{"ok": ..., "result": ...}` answers),
so that aiogram's custom API server setting (`TelegramAPIServer.from_base`)
points a real bot at it. Tests play the users: they queue updates (messages,
documents, button presses) that long-polling `getUpdates` hands out, and read
what the bot sent and how it edited it.

Telegram's own refusals that a bot must handle are reproduced: an edit that
changes nothing is a 400 "message is not modified", an unknown method a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 777000, "is_bot": True, "first_name": "Cocoon", "username": "cocoon_test_bot"}


@dataclass
class SentMessage:
    """A message the bot sent, and each text it had, oldest first."""

    chat_id: int
    message_id: int
    texts: list[str]
    reply_markup: dict[str, Any] | None = None
    reply_to: int | None = None

    @property
    def text(self) -> str:
        return self.texts[-1]

    @property
    def edits(self) -> int:
        return len(self.texts) - 1


@dataclass
class BotApiDouble:
    """The server's state: updates waiting, messages sent, files, every call made."""

    token: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[SentMessage] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # Methods this server answers 404, as a Bot API server that lacks them would.
    missing: set[str] = field(default_factory=set)
    base_url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    # -- serving ----------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = {key: str(value) for key, value in (await request.post()).items()}
        handler = getattr(self, f"_do_{method}", None)
        if handler is None or method in self.missing:
            return _error(404, "Not Found: method not found")
        if method != "getUpdates":
            self.calls.append((method, params))
        try:
            result = await handler(params)
        except _BadRequest as exc:
            return _error(400, f"Bad Request: {exc}")
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"ok": True, "result": result})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        for path, data in self.files.values():
            if path == request.match_info["path"]:
                return web.Response(body=data)
        return web.Response(status=404)

    # -- Bot API methods ----------------------------------------------------------

    async def _do_getMe(self, params: dict[str, str]) -> Any:
        return BOT_USER

    async def _do_deleteWebhook(self, params: dict[str, str]) -> Any:
        return True

    async def _do_getUpdates(self, params: dict[str, str]) -> Any:
        offset = int(params.get("offset", 0))
        timeout = float(params.get("timeout", 0))
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self.updates)), timeout
                    )
        return list(self.updates)

    async def _do_sendMessage(self, params: dict[str, str]) -> Any:
        chat_id = int(params["chat_id"])
        markup = json.loads(params["reply_markup"]) if "reply_markup" in params else None
        reply = json.loads(params["reply_parameters"]) if "reply_parameters" in params else {}
        message = SentMessage(
            chat_id, next(self._ids), [params["text"]], markup, reply.get("message_id")
        )
        self.sent.append(message)
        return self._message_json(message)

    async def _do_editMessageText(self, params: dict[str, str]) -> Any:
        message = self.message(int(params["chat_id"]), int(params["message_id"]))
        if params["text"] == message.text and "reply_markup" not in params:
            raise _BadRequest(
                "message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message"
            )
        message.texts.append(params["text"])
        message.reply_markup = (
            json.loads(params["reply_markup"]) if "reply_markup" in params else None
        )
        return self._message_json(message)

    async def _do_sendChatAction(self, params: dict[str, str]) -> Any:
        return True

    async def _do_answerCallbackQuery(self, params: dict[str, str]) -> Any:
        return True

    async def _do_getFile(self, params: dict[str, str]) -> Any:
        file_id = params["file_id"]
        if file_id not in self.files:
            raise _BadRequest("invalid file_id")
        path, data = self.files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(data),
            "file_path": path,
        }

    # -- the users' side ----------------------------------------------------------

    def _queue(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._ids)
        self.updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _user_message(self, user_id: int, **content: Any) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        return {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": user["first_name"]},
            "from": user,
            **content,
        }

    def user_sends(self, user_id: int, text: str) -> int:
        """A user writes to the bot in their private chat; returns the message id."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message = self._user_message(user_id, **content)
        self._queue({"message": message})
        return int(message["message_id"])

    def user_sends_document(
        self, user_id: int, name: str, mime_type: str, data: bytes, caption: str = ""
    ) -> int:
        """A user sends a file; the bot fetches it with getFile and a download."""
        file_id = f"file{next(self._ids)}"
        self.files[file_id] = (f"documents/{file_id}_{name}", data)
        document = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        extra = {"caption": caption} if caption else {}
        message = self._user_message(user_id, document=document, **extra)
        self._queue({"message": message})
        return int(message["message_id"])

    def user_presses(self, user_id: int, message: SentMessage, data: str) -> None:
        """A user presses an inline button carrying `data` under one of the bot's messages."""
        self._queue(
            {
                "callback_query": {
                    "id": f"cq{next(self._ids)}",
                    "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
                    "chat_instance": f"ci{user_id}",
                    "data": data,
                    "message": self._message_json(message),
                }
            }
        )

    # -- reading what the bot did -------------------------------------------------

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        for message in self.sent:
            if (message.chat_id, message.message_id) == (chat_id, message_id):
                return message
        raise _BadRequest("message to edit not found")

    def sent_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.sent if m.chat_id == chat_id]

    def called(self, method: str) -> list[dict[str, str]]:
        return [params for name, params in self.calls if name == method]

    async def wait_for(self, predicate: Callable[[], Any], limit_s: float = 30.0) -> Any:
        """Wait until `predicate()` is true (checked after every call the bot makes)."""
        async with self._changed:
            async with asyncio.timeout(limit_s):
                await self._changed.wait_for(predicate)
        return predicate()

    def _message_json(self, message: SentMessage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": {"id": message.chat_id, "type": "private"},
            "from": BOT_USER,
            "text": message.text,
        }
        if message.reply_markup:
            out["reply_markup"] = message.reply_markup
        return out


class _BadRequest(Exception):
    pass


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )
