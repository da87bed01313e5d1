"""The progress display on stderr: one redrawn line on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from typing import TextIO

BAR = 20


class ProgressDisplay:
    """A bar over all loads of the run, and what the current load is doing."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._width = 0

    def _bar(self) -> str:
        filled = BAR * self.done // self.total
        return f"[{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total}"

    def update(self, label: str, phase: str, requests: int, errors: int, elapsed_s: float) -> None:
        """Redraw the line for the load running now (terminals only)."""
        if not self.tty:
            return
        text = f"{self._bar()} {label}: {phase} {requests:,} req"
        if errors:
            text += f", {errors:,} errors"
        text += f" {elapsed_s:.1f} s"
        self._draw(text)

    def load_done(self, summary: str) -> None:
        """A load finished: print its one-line summary for good."""
        self.done += 1
        self.say(f"{self._bar()} {summary}")

    def say(self, text: str) -> None:
        """A line that stays (notes, skipped targets)."""
        if self.tty:
            self._draw(text)
            self.stream.write("\n")
            self._width = 0
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)
