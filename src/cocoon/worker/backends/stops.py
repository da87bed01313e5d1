"""Token bytes to text as a model generates it, cut at the first stop string.

Sans-IO and engine-free, so it is tested without a model. Two things make
the text of one token differ from what may leave the worker at once:

- A token may end inside a UTF-8 character (byte-level BPE splits emoji and
  CJK characters): the bytes wait for the rest of the character.
- Text that could be the start of a stop string is held back until the next
  tokens show whether the stop string follows (then it is cut, never sent)
  or not (then it leaves with them). So the client never sees any part of a
  stop string, as the OpenAI API promises.
"""

from __future__ import annotations

import codecs


class StopScanner:
    """Feed each token's bytes; get the text that may leave now, and whether a stop matched."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self.stopped = False

    def feed(self, data: bytes) -> str:
        """The text that is safe to send after these bytes; sets `stopped` at a stop string."""
        if self.stopped:
            return ""
        return self._scan(self._held + self._decoder.decode(data))

    def finish(self) -> str:
        """The end of the answer: whatever was held back (an unfinished character as U+FFFD)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        cut = self._earliest_stop(text)
        if cut is not None:
            self.stopped = True
            return text[:cut]
        return text

    def _scan(self, text: str) -> str:
        cut = self._earliest_stop(text)
        if cut is not None:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._longest_stop_prefix_at_end(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def _earliest_stop(self, text: str) -> int | None:
        found = [index for stop in self._stops if (index := text.find(stop)) >= 0]
        return min(found) if found else None

    def _longest_stop_prefix_at_end(self, text: str) -> int:
        """Length of the longest end of `text` that a stop string starts with."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
