"""Conversations, kept in the bot's memory only (client side: nothing of them
leaves this process but the sealed requests), one per chat.

Each holds the chat's model, its recent messages, and what is known of its last
answer (for /receipt). The newest `max_chats` chats are kept; older ones are
forgotten as if /new had been sent.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..recent import newest


@dataclass
class LastAnswer:
    """The last answer of a chat: its request id at the gateway, and its worker."""

    request_id: str
    model: str
    worker: str = ""


@dataclass
class Conversation:
    """One chat's state."""

    model: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    last: LastAnswer | None = None


class Conversations:
    """The chats the bot is in, newest last."""

    def __init__(self, history_messages: int, max_chats: int = 10_000) -> None:
        self.history_messages = history_messages
        self.max_chats = max_chats
        self._chats: OrderedDict[int, Conversation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._chats)

    def get(self, chat_id: int) -> Conversation:
        return newest(self._chats, chat_id, Conversation, self.max_chats)

    def forget(self, chat_id: int) -> None:
        """Drop the chat's messages and last answer; its model stays chosen."""
        chat = self._chats.get(chat_id)
        if chat is not None:
            chat.messages.clear()
            chat.last = None

    def prompt(self, chat_id: int, system_prompt: str, text: str) -> list[dict[str, str]]:
        """The messages to send for a new question: the system prompt, the recent
        history, the question."""
        history = self.get(chat_id).messages[-(self.history_messages - 1) :]
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return [*system, *history, {"role": "user", "content": text}]

    def answered(self, chat_id: int, question: str, answer: str, last: LastAnswer) -> None:
        """Keep a question and its answer, and the answer's ids for /receipt."""
        chat = self.get(chat_id)
        chat.messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
        del chat.messages[: -self.history_messages]
        chat.last = last
