"""WAL checkpoints run in a thread on a connection of their own, never inside a commit.

Real SQLite files: the proof that a checkpoint ran is the database file itself,
copied without its log and opened alone, which holds only checkpointed rows.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from cocoon.payments.checkpoints import BACKSTOP_PAGES, Checkpointer
from cocoon.payments.commits import GroupCommit


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the table is in the file, empty
    return db


def in_file_alone(path: Path, tmp: Path) -> int:
    """Rows of the database file without its log (what a checkpoint has copied)."""
    copy = tmp / "alone.sqlite"
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy)
    try:
        return int(db.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    finally:
        db.close()


def put(commits: GroupCommit, key: str) -> None:
    with commits.write() as db:
        db.execute("INSERT INTO t VALUES (?, 1)", (key,))


async def test_a_due_checkpoint_copies_the_log_from_a_thread(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    db = open_db(path)
    commits = GroupCommit(db)
    commits.checkpoints.interval_s = 0.0
    # The connection's own checkpoint is pushed far out: only the thread copies.
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    for i in range(20):
        put(commits, f"r{i}")
    await commits.durable()
    await commits.checkpoints.idle()
    assert commits.checkpoints.checkpoints == 1
    assert in_file_alone(path, tmp_path) == 20
    commits.close()
    db.close()


async def test_no_checkpoint_before_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    db = open_db(path)
    commits = GroupCommit(db)
    commits.checkpoints.interval_s = 3600.0
    put(commits, "a")
    await commits.durable()
    await commits.checkpoints.idle()
    assert commits.checkpoints.checkpoints == 0
    assert in_file_alone(path, tmp_path) == 0  # still only in the log
    commits.close()
    db.close()


async def test_a_database_in_memory_is_not_checkpointed() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    checkpoints = Checkpointer(db, interval_s=0.0)
    commits = GroupCommit(db)
    put(commits, "a")
    await commits.durable()
    checkpoints.after_commit(None)
    await checkpoints.idle()
    assert checkpoints.checkpoints == 0 and commits.checkpoints.checkpoints == 0
    db.close()
