"""Faults for the books that journal (payments/journal_files.py): a disk that fills in
the middle of a record, and a process killed before anything is folded at exit."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cocoon.payments import journal_files
from cocoon.payments.expects_journal import JournaledExpects
from cocoon.payments.journal import JournaledBook


@contextmanager
def a_full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A journal write inside fails as a full disk does, its record cut after 5 bytes;
    the block must raise that OSError."""

    def torn(fd: int, data: bytes) -> int:
        os.write(fd, bytes(data)[:5])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(journal_files, "_write", torn)
        with pytest.raises(OSError):
            yield


def kill(book: JournaledBook | JournaledExpects) -> None:
    """As a kill -9 leaves the book: nothing folded, nothing committed at exit."""
    book._journal.close()
    book._db.close()


@contextmanager
def a_failing_commit(book: JournaledBook | JournaledExpects) -> Iterator[None]:
    """The book's next COMMIT inside fails, as one does on an I/O error: SQLite's
    authorizer refuses it once (the transaction is then rolled back)."""
    refused: list[bool] = []

    def authorize(action: int, arg1: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT" and not refused:
            refused.append(True)
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    book._db.set_authorizer(authorize)
    try:
        yield
    finally:
        book._db.set_authorizer(None)
    assert refused, "no commit was tried"
