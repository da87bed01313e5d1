"""Append-only journal files: a batch of records in one `write`, read back in order.

A node that must not lose a record once something depending on it has left
(a worker's receipt, a request a proxy forwards) can append it to a file
instead of committing a transaction: one `write` reaches the OS as surely
as a commit does (neither is synced), for a fraction of the cost. Records are
folded into the node's book later, many at once; each fold starts a new file,
and the files folded are removed once the fold is committed.

A record is its 4-byte length and its msgpack. One cut short (a crash, or a
full disk, in the middle of a write) ends its file when read: what was written
after a failed write goes to a file of its own.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

import msgspec

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    """What reads a record's msgpack back (a `msgspec.msgpack.Decoder`)."""

    def decode(self, data: bytes, /) -> T_co: ...


class StampedDecoder(Generic[T]):
    """Records as journaled now, a tuple ending in when it was owed, or as journaled
    before records kept that (a journal a crash left to a newer version): those end in
    0.0, to be stamped when folded, as they were then."""

    def __init__(self, stamped: Any, unstamped: Any) -> None:
        self._stamped: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(stamped)
        self._unstamped = msgspec.msgpack.Decoder(unstamped)

    def decode(self, data: bytes) -> T:
        try:
            return self._stamped.decode(data)
        except msgspec.ValidationError:
            return cast(T, (*self._unstamped.decode(data), 0.0))


_LENGTH = struct.Struct(">I")
_write = os.write  # a name of our own, for tests that make a write fail
_encoder = msgspec.msgpack.Encoder()


def record(entry: object) -> bytes:
    """One entry as a journal record."""
    payload = _encoder.encode(entry)
    return _LENGTH.pack(len(payload)) + payload


def read_records(path: Path, decoder: Decoder[T]) -> list[T]:
    """The entries of one journal file, up to a record cut short (a crash in its write,
    which nothing depending on it outlived) or malformed."""
    data = path.read_bytes()
    entries: list[T] = []
    at = 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        end = at + _LENGTH.size + size
        if end > len(data):
            break
        try:
            entries.append(decoder.decode(data[at + _LENGTH.size : end]))
        except msgspec.DecodeError:
            log.warning("journal %s: a malformed record at byte %d ends it", path, at)
            break
        at = end
    return entries


class JournalFiles(Generic[T]):
    """The numbered files `<stem>.N` beside `stem`: the newest is appended to."""

    def __init__(self, stem: Path, decoder: Decoder[T]) -> None:
        self._dir = stem.parent
        self._stem = stem.name
        self._decoder = decoder
        self.number = 0
        self.fd = -1
        # Files folded in whose fold is not committed yet. Were one's commit to fail,
        # its records would be in neither the rows nor memory, and the next fold's
        # drop would remove the file too: `fold_undone` hands them back instead.
        self._folding: list[int] = []

    def files(self) -> list[tuple[int, Path]]:
        """The journal files there are, by number, oldest first."""
        found = []
        for path in self._dir.glob(f"{self._stem}.*"):
            suffix = path.name.rsplit(".", 1)[1]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def recover(self, fold: Callable[[list[T]], None]) -> int:
        """Hand what the files hold (a crash before their fold was committed), oldest
        first, to `fold`, which writes and commits it; then remove them. How many
        entries there were."""
        files = self.files()
        if not files:
            return 0
        entries = [entry for _, path in files for entry in read_records(path, self._decoder)]
        fold(entries)
        self.drop(upto=files[-1][0])
        return len(entries)

    def open(self, fold: Callable[[list[T]], None], what: str) -> None:
        """Fold in what a crash left (`recover`), then append to a fresh file 0."""
        if found := self.recover(fold):
            log.info("folded %d journaled %s into the book", found, what)
        self.number = 0
        self.fd = self._open(0)

    def _open(self, number: int) -> int:
        path = self._dir / f"{self._stem}.{number}"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, entries: Iterable[object]) -> None:
        """Write entries in one go; on disk (as far as kill -9 goes) once this returns.
        OSError if they could not be: what comes after goes to a new file."""
        data = memoryview(b"".join(record(entry) for entry in entries))
        try:
            while data:
                data = data[_write(self.fd, data) :]
        except OSError:
            self.next_file()
            raise

    def next_file(self) -> int:
        """Append to a new file from now on; the number of the one before."""
        before, self.number = self.number, self.number + 1
        os.close(self.fd)
        self.fd = self._open(self.number)
        return before

    def fold_started(self) -> int:
        """A fold begins: append to a new file from now on; the number of the one before,
        whose records are being folded (`fold_committed` once the fold is on disk)."""
        before = self.next_file()
        self._folding.append(before)
        return before

    def fold_committed(self, upto: int) -> None:
        """The fold of the files numbered `upto` and before is committed: remove them."""
        self.drop(upto=upto)
        self._folding = [number for number in self._folding if number > upto]

    def fold_undone(self) -> list[T]:
        """A write was undone, perhaps a fold's: the records of the files whose fold is
        not committed, oldest first, to hold in memory again (their files stay until a
        later fold of them is committed). Folding one twice must leave the book as once."""
        folding, self._folding = self._folding, []
        return [
            entry
            for number in folding
            if (path := self._dir / f"{self._stem}.{number}").exists()
            for entry in read_records(path, self._decoder)
        ]

    def drop(self, *, upto: int) -> None:
        """Remove the files folded in (numbered `upto` and before)."""
        for number, path in self.files():
            if number <= upto:
                path.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Stop appending (the files stay until dropped)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close_folded(self, fold: Callable[[], object], commit: Callable[[], object]) -> bool:
        """At a book's close, unless closed already (False): `fold` what memory holds and
        `commit` it (which raises if it cannot: the files are kept, for the next open),
        stop appending, and remove the files."""
        if self.closed:
            return False
        fold()
        commit()
        self.close()
        self.drop(upto=self.number)
        return True
