"""How a streamed answer becomes Telegram messages: edits of one message, no more
often than Telegram allows, split where a message would pass its length limit.

Sans-IO: `EditPlan` is fed the answer as it grows and the time, and says which
messages to send or edit with what text; the handler does the calls.
"""

from __future__ import annotations

from dataclasses import dataclass

# Telegram's limit on a message's text, in characters (UTF-16 units, to be exact:
# a margin keeps characters outside the BMP from passing it).
MESSAGE_LIMIT = 4096
SAFE_LIMIT = MESSAGE_LIMIT - 96
# Shown while the answer is still coming.
CURSOR = " ▍"
PLACEHOLDER = "…"


def split_text(text: str, limit: int = SAFE_LIMIT) -> list[str]:
    """The text in pieces of at most `limit` characters, cut at a paragraph, line or
    word break where one lies in the last quarter of a piece."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = limit
        for separator in ("\n\n", "\n", " "):
            found = text.rfind(separator, limit * 3 // 4, limit)
            if found > 0:
                cut = found + len(separator)
                break
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


@dataclass(frozen=True)
class Edit:
    """Put `text` in the answer's message number `index` (0: the first); a new
    message when `index` is past the ones sent so far."""

    index: int
    text: str


class EditPlan:
    """The edits that show a growing answer within Telegram's rate of edits."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        # What each message of the answer shows now.
        self.shown: list[str] = [PLACEHOLDER]
        self._edited_at: float | None = None

    def _edits(self, text: str, final: bool) -> list[Edit]:
        pieces = split_text(text) if text else [PLACEHOLDER]
        if not final:
            pieces[-1] += CURSOR
        edits = []
        for index, piece in enumerate(pieces):
            if index >= len(self.shown) or self.shown[index] != piece:
                edits.append(Edit(index, piece))
        return edits

    def progress(self, text: str, now: float) -> list[Edit]:
        """The edits to make now that the answer reads `text` (none while the last
        edit is too recent)."""
        if self._edited_at is not None and now - self._edited_at < self.interval_s:
            return []
        edits = self._edits(text, final=False)
        if edits:
            self._edited_at = now
        return edits

    def finish(self, text: str) -> list[Edit]:
        """The edits that show the whole answer, whenever the last one was."""
        return self._edits(text, final=True)

    def done(self, edit: Edit) -> None:
        """Record that an edit reached Telegram."""
        if edit.index < len(self.shown):
            self.shown[edit.index] = edit.text
        else:
            self.shown.append(edit.text)
