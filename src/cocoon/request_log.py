"""The line a node logs for every request, at a fraction of `logging`'s cost.

Every server logs one line per request at info level. Through `logging` such a
line cost a node 18-24 µs of CPU at c=64, 5.5-8 % of it (a `LogRecord` of some
twenty fields, the handler's locks and calls, the formatter), three times on
a request's path. Nothing in a request's line
needs that machinery when the node's own handler (`install`) is the only one
that will see it, so `RequestLog` then writes the same line, in the same
format, to the same stream itself. Under any other set-up (a test's capture,
filters, another handler, an application that embeds a node) the line goes
through `logging` as every other line does.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class NodeFormatter(logging.Formatter):
    """The node's format, with the date and time formatted once a second."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        # As `LogRecord.msecs`: the milliseconds of `created`, cut, not rounded.
        return f"{self._text},{int((created - second) * 1000):03d}"


class NodeHandler(logging.StreamHandler[TextIO]):
    """The node's log handler: every record, formatted by `NodeFormatter`."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.node_formatter = NodeFormatter(FORMAT)
        self.setFormatter(self.node_formatter)

    def write_line(self, name: str, message: str) -> None:
        """Write an info line as `emit` would, without a record."""
        line = f"{self.node_formatter.stamp(time.time())} INFO {name}: {message}\n"
        self.acquire()
        try:
            self.stream.write(line)
            self.stream.flush()
        except Exception:
            # As `emit`: a log that cannot be written never fails the request.
            record = logging.makeLogRecord(
                {"name": name, "msg": message, "levelno": logging.INFO, "levelname": "INFO"}
            )
            self.handleError(record)
        finally:
            self.release()


_installed: NodeHandler | None = None


def install(level: int) -> NodeHandler:
    """Log to stderr through the node's handler, at `level` and above."""
    global _installed
    # Skip what the format never shows: the caller's file and line (found by
    # walking the stack), thread and process names; the logging HOWTO's
    # "Optimization" section.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = NodeHandler(sys.stderr)
    logging.basicConfig(level=level, handlers=[handler])
    _installed = handler
    return handler


def _only_ours(logger: logging.Logger, handler: NodeHandler) -> bool:
    """Whether `handler` alone, unfiltered, would take `logger`'s info lines."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return False
        if current.handlers:
            # The root, with the node's handler alone, that passes info lines.
            return (
                current is logging.root
                and len(current.handlers) == 1
                and current.handlers[0] is handler
                and not handler.filters
                and handler.level <= logging.INFO
                # The node's format: what `write_line` writes.
                and handler.formatter is handler.node_formatter
            )
        current = current.parent if current.propagate else None
    return False


class RequestLog:
    """A module's per-request lines: `RequestLog(__name__).info(message, *args)`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.logger = logging.getLogger(name)

    def info(self, message: str, *args: object) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _installed
        if handler is None or not _only_ours(logger, handler):
            logger.info(message, *args)
            return
        handler.write_line(self.name, message % args if args else message)
