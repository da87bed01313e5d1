"""What goes wrong in the bot, as the user is told it."""

from __future__ import annotations


class BotError(Exception):
    """Something the bot tells the user in one line instead of an answer."""


class DocumentError(BotError):
    """A document that cannot be read as text (its kind, size or content)."""


class GatewayError(BotError):
    """The client gateway refused or failed a request (its OpenAI error message)."""
