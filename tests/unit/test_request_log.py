"""A request's line: the same text as `logging` writes, and `logging` itself
wherever anything but the node's own handler would see the line."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Iterator

import pytest

from cocoon import request_log
from cocoon.request_log import NodeFormatter, NodeHandler, RequestLog

NAME = "cocoon.test.lines"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The node's handler, installed, writing to a buffer; the root at info."""
    stream = io.StringIO()
    handler = NodeHandler(stream)
    monkeypatch.setattr(request_log, "_installed", handler)
    level = logging.root.level
    logging.root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logging.root.setLevel(level)


@contextlib.contextmanager
def alone(*, records: bool = False) -> Iterator[None]:
    """The node's handler alone on the root (pytest adds its own for each test);
    with `records` False, making a LogRecord fails the test."""
    handler = request_log._installed
    assert handler is not None
    kept = logging.root.handlers
    made = logging.Logger.makeRecord
    logging.root.handlers = [handler]
    if not records:
        logging.Logger.makeRecord = _no_record  # type: ignore[method-assign]
    try:
        yield
    finally:
        logging.root.handlers = kept
        logging.Logger.makeRecord = made  # type: ignore[method-assign]


def _no_record(*args: object, **kwargs: object) -> logging.LogRecord:
    raise AssertionError("the line went through logging")


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_the_line_is_the_one_logging_writes(node: io.StringIO) -> None:
    with alone():
        RequestLog(NAME).info("request %s outcome=%s %.1f ms", "abc", "ok", 12.345)
    with alone(records=True):
        logging.getLogger(NAME).info("request %s outcome=%s %.1f ms", "abc", "ok", 12.345)
    fast, slow = lines(node)
    assert re.fullmatch(STAMP + " INFO cocoon.test.lines: request abc outcome=ok 12.3 ms", fast)
    assert fast[23:] == slow[23:]


def test_a_message_without_arguments_is_written_as_is(node: io.StringIO) -> None:
    with alone():
        RequestLog(NAME).info("100% done")
    assert lines(node)[0].endswith("INFO cocoon.test.lines: 100% done")


def test_nothing_below_the_level(node: io.StringIO) -> None:
    logging.getLogger(NAME).setLevel(logging.WARNING)
    try:
        with alone():
            RequestLog(NAME).info("request %s", "abc")
    finally:
        logging.getLogger(NAME).setLevel(logging.NOTSET)
    assert lines(node) == []


def test_another_handler_gets_the_line_through_logging(
    node: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=NAME):
        RequestLog(NAME).info("request %s", "abc")
    assert [r.getMessage() for r in caplog.records if r.name == NAME] == ["request abc"]


def test_a_filter_is_obeyed(node: io.StringIO) -> None:
    logger = logging.getLogger(NAME)
    refuse = logging.Filter("somewhere.else")
    logger.addFilter(refuse)
    try:
        with alone(records=True):
            RequestLog(NAME).info("request %s", "abc")
    finally:
        logger.removeFilter(refuse)
    assert lines(node) == []


def test_another_format_on_the_node_handler_is_obeyed(
    node: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = request_log._installed
    assert handler is not None
    monkeypatch.setattr(handler, "formatter", logging.Formatter("%(levelname)s %(message)s"))
    with alone(records=True):
        RequestLog(NAME).info("request %s", "abc")
    assert lines(node) == ["INFO request abc"]


def test_a_logger_that_does_not_propagate_keeps_its_lines(node: io.StringIO) -> None:
    logger = logging.getLogger(NAME)
    own = io.StringIO()
    mine = logging.StreamHandler(own)
    logger.addHandler(mine)
    logger.propagate = False
    try:
        with alone(records=True):
            RequestLog(NAME).info("request %s", "abc")
    finally:
        logger.removeHandler(mine)
        logger.propagate = True
    assert own.getvalue() == "request abc\n"
    assert lines(node) == []


def test_without_the_node_handler_lines_go_through_logging(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(request_log, "_installed", None)
    with caplog.at_level(logging.INFO, logger=NAME):
        RequestLog(NAME).info("request %s", "abc")
    assert [r.getMessage() for r in caplog.records if r.name == NAME] == ["request abc"]


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError("the reader went away")


def test_a_line_that_cannot_be_written_fails_nothing(
    node: io.StringIO, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = request_log._installed
    assert handler is not None
    monkeypatch.setattr(handler, "stream", _Broken())
    with alone():
        RequestLog(NAME).info("request %s", "abc")
    assert "Logging error" in capsys.readouterr().err


@pytest.mark.parametrize("created", [1_700_000_000.0, 1_700_000_000.9999, 1_700_000_123.0405])
def test_the_stamp_is_logging_s_time_and_milliseconds(created: float) -> None:
    formatter = NodeFormatter(request_log.FORMAT)
    record = logging.LogRecord(NAME, logging.INFO, __file__, 1, "x", None, None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    expected = time_text(created) + f",{int(record.msecs):03d}"
    assert formatter.stamp(created) == expected
    assert formatter.formatTime(record) == expected


def time_text(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
