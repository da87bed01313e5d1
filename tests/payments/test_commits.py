"""Group commit: the writes of one event-loop turn share a transaction, each atomic.

Real SQLite files, read back through a second connection (what another process,
or the node after a restart, would see) and one process killed with SIGKILL:
a write is invisible until its turn commits, `durable()` returns only once it
is on disk, a failed write undoes only itself, and kill -9 between the write
and the commit loses exactly the writes whose senders had not been let go.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cocoon.payments.commits import LAZY_S, GroupCommit


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    return db


def seen(path: Path) -> dict[str, int]:
    """The committed rows, as another connection reads them."""
    other = sqlite3.connect(path)
    try:
        return {str(k): int(v) for k, v in other.execute("SELECT k, v FROM t")}
    finally:
        other.close()


def put(commits: GroupCommit, key: str, value: int) -> None:
    with commits.write() as db:
        db.execute("INSERT INTO t VALUES (?, ?)", (key, value))


def test_without_a_loop_each_write_commits_as_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put(commits, "a", 1)
    assert seen(path) == {"a": 1} and not commits.pending
    put(commits, "b", 2)
    assert (commits.commits, commits.writes) == (2, 2)


async def test_writes_of_one_turn_share_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    for i in range(50):
        put(commits, f"r{i}", i)
    # Not on disk yet: whoever depends on these writes must wait.
    assert commits.pending and seen(path) == {}
    released: list[str] = []
    commits.then(lambda: released.append("voucher"))
    assert released == []
    await commits.durable()
    assert len(seen(path)) == 50 and released == ["voucher"]
    assert (commits.commits, commits.writes) == (1, 50)
    # Nothing open: durable returns at once, `then` runs at once.
    await commits.durable()
    commits.then(lambda: released.append("now"))
    assert released == ["voucher", "now"]


async def test_tasks_writing_in_one_turn_are_released_by_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    sent: list[str] = []

    async def request(i: int) -> None:
        put(commits, f"r{i}", i)
        await commits.durable()
        assert f"r{i}" in seen(path)  # never sent before its write is on disk
        sent.append(f"r{i}")

    await asyncio.gather(*(request(i) for i in range(64)))
    assert len(sent) == 64 and commits.commits == 1


async def test_a_failed_write_undoes_itself_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put(commits, "a", 1)
    with pytest.raises(sqlite3.IntegrityError), commits.write() as db:
        db.execute("INSERT INTO t VALUES ('b', 2)")
        db.execute("INSERT INTO t VALUES ('a', 3)")  # the key exists: the write fails
    put(commits, "c", 3)
    await commits.durable()
    assert seen(path) == {"a": 1, "c": 3}


async def test_a_failed_first_write_of_a_turn_leaves_nothing_and_the_next_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put(commits, "a", 1)
    await commits.durable()
    undone: list[bool] = []
    commits.on_undone(lambda: undone.append(True))
    # The turn's first write (no savepoint: undoing it is undoing the transaction).
    with pytest.raises(sqlite3.IntegrityError), commits.write() as db:
        db.execute("INSERT INTO t VALUES ('b', 2)")
        db.execute("INSERT INTO t VALUES ('a', 3)")
    assert undone == [True] and not commits.pending
    await commits.durable()  # nothing to wait for
    put(commits, "c", 3)
    await commits.durable()
    assert seen(path) == {"a": 1, "c": 3}
    assert commits.commits == 2


async def test_commit_inside_a_write_waits_for_its_turn(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    with commits.write() as db:
        db.execute("INSERT INTO t VALUES ('a', 1)")
        assert commits.commit() is False  # half a write never reaches the disk
    assert commits.commit() is True and seen(path) == {"a": 1}


CHILD = """
import asyncio, sqlite3, sys
from cocoon.payments.commits import LAZY_S, GroupCommit

async def main() -> None:
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    commits = GroupCommit(db)
    for i in range(10):
        with commits.write() as w:
            w.execute("INSERT INTO t VALUES (?, ?)", (f"sent{i}", i))
    await commits.durable()
    print("sent", flush=True)  # what depended on the first ten writes may leave now
    for i in range(10):
        with commits.write() as w:
            w.execute("INSERT INTO t VALUES (?, ?)", (f"held{i}", i))
    print("held", flush=True)  # written, not committed: nothing may leave for these
    sys.stdin.read()  # blocks inside the turn, so its commit never runs

asyncio.run(main())
"""


def test_kill_9_before_the_commit_loses_only_what_never_left(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "sent"
        assert child.stdout.readline().strip() == "held"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert seen(path) == {f"sent{i}": i for i in range(10)}


# -- lazy writes: nothing waits for them ---------------------------------------


def put_lazily(commits: GroupCommit, key: str, value: int) -> None:
    with commits.write(lazy=True) as db:
        db.execute("INSERT INTO t VALUES (?, ?)", (key, value))


async def test_a_lazy_write_rides_on_the_next_commit_something_needs(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put_lazily(commits, "owed", 1)  # a client's debt for the answer it just delivered
    for _ in range(3):
        await asyncio.sleep(0)  # turns of the loop go by: no commit of its own
    assert seen(path) == {} and commits.pending and commits.commits == 0
    put(commits, "next", 2)  # the next request's record, which must be on disk
    await commits.durable()
    assert seen(path) == {"owed": 1, "next": 2}
    assert (commits.commits, commits.writes) == (1, 2)


async def test_a_lazy_write_alone_is_committed_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put_lazily(commits, "owed", 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    from harness.network import until  # not at the top: the kill -9 child runs this file

    await until(lambda: not commits.pending, 5)
    assert seen(path) == {"owed": 1}
    assert loop.time() - started >= LAZY_S * 0.9  # not at the next turn


async def test_waiting_for_a_lazy_write_commits_it_at_the_next_turn(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put_lazily(commits, "owed", 1)
    done: list[bool] = []
    commits.then(lambda: done.append(True))  # a voucher that must leave after it
    await commits.durable()
    assert seen(path) == {"owed": 1} and done == [True]


async def test_waiting_for_durable_writes_does_not_wait_for_lazy_ones(tmp_path: Path) -> None:
    # A fold's slice is lazy (its rows are in a journal): an answer that waits for what
    # it wrote must not wait for the slice's commit too.
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put_lazily(commits, "owed", 1)
    await commits.durable()
    assert commits.pending and seen(path) == {}
    with commits.write() as db:  # a write that is not lazy commits both
        db.execute("INSERT INTO t VALUES ('paid', 2)")
    await commits.durable()
    assert not commits.pending and seen(path) == {"owed": 1, "paid": 2}


async def test_closing_commits_lazy_writes(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    commits = GroupCommit(open_db(path))
    put_lazily(commits, "owed", 1)
    commits.close()
    assert seen(path) == {"owed": 1}
