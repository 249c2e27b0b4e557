"""What only the embedded SQLite store has: its writer thread, its files, their damage."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amqplike.properties import BasicProperties
from amqplike.store import (
    QueueRecord,
    SQLiteStore,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreState,
)
from amqplike.store._schema import DEFAULT_PAGE_SIZE, WAL_CHECKPOINT_BYTES
from tests.store.conftest import (
    WAIT_SECONDS,
    FaultyConnection,
    Recorder,
    SQLiteBackend,
    database_page_size,
)

PERSISTENT = BasicProperties(delivery_mode=2)
#: The page size of stores made before 32 KiB pages became the default.
OLD_PAGE_SIZE = 8192
#: Old and new page sizes, for the tests of what depends on the file's layout.
PAGE_SIZES = pytest.mark.parametrize(
    "page_size", [OLD_PAGE_SIZE, DEFAULT_PAGE_SIZE], ids=["8k-pages", "default-pages"]
)


def settle(store: SQLiteStore, recorder: Recorder) -> None:
    """Wait until everything queued so far is committed."""
    token = object()
    store.barrier(token)
    recorder.wait_reported(token)


def crash_image(path: str, directory: Path) -> str:
    """Copy the store's files as a crash would leave them (no clean close); return the copy.

    Called while the writer is idle between batches, every commit is on
    disk, so the copy is what a power cut at that moment would leave.
    """
    directory.mkdir()
    copy = str(directory / os.path.basename(path))
    shutil.copyfile(path, copy)
    if os.path.exists(path + "-wal"):
        shutil.copyfile(path + "-wal", copy + "-wal")
    return copy


def load_copy(path: str, **kwargs: Any) -> tuple[SQLiteStore, Any]:
    """Open a store on ``path`` (not through the harness) and load it."""
    store = SQLiteStore(path, Recorder(), **kwargs)
    return store, store.load()


# -- the writer thread ---------------------------------------------------------------


def test_wal_mode_and_full_sync(sqlite_backend: SQLiteBackend) -> None:
    """The writer's connection is in WAL mode with synchronous=FULL (fsync per commit)."""
    sqlite_backend.open()
    conn = sqlite_backend.writer_connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_new_store_gets_the_default_page_size(sqlite_backend: SQLiteBackend) -> None:
    """A new file gets DEFAULT_PAGE_SIZE pages, and checkpoints after WAL_CHECKPOINT_BYTES."""
    sqlite_backend.open()
    assert database_page_size(sqlite_backend.path) == DEFAULT_PAGE_SIZE == 32768
    conn = sqlite_backend.writer_connection()
    assert conn.execute("PRAGMA page_size").fetchone()[0] == DEFAULT_PAGE_SIZE
    (pages,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    assert pages * DEFAULT_PAGE_SIZE == WAL_CHECKPOINT_BYTES


def test_old_8k_page_store_keeps_its_pages_and_works(sqlite_backend: SQLiteBackend) -> None:
    """A store made with 8 KiB pages opens, reads and writes as before under the new
    default, keeping its page size (and SQLite's 1000-page checkpoint interval)."""
    store, recorder, _ = sqlite_backend.open(page_size=OLD_PAGE_SIZE)
    store.put_queue(QueueRecord("/", "q"))
    bodies = {store.append("/", ["q"], "", "q", PERSISTENT, os.urandom(n)): n
              for n in (100, 1024, 65536)}
    store.close()
    assert database_page_size(sqlite_backend.path) == OLD_PAGE_SIZE
    first = {}
    store, recorder, loaded = sqlite_backend.open()  # the default page size
    try:
        conn = sqlite_backend.writer_connection()
        assert conn.execute("PRAGMA page_size").fetchone()[0] == OLD_PAGE_SIZE
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert list(loaded.messages[("/", "q")].message_ids) == list(bodies)
        first = {i: m.body for i, m in store.read_messages(list(bodies)).items()}
        assert {i: len(b) for i, b in first.items()} == bodies
        added = [store.append("/", ["q"], "", "q", PERSISTENT, os.urandom(n))
                 for n in (100, 1024, 65536)]
        store.remove("/", "q", next(iter(bodies)))
        settle(store, recorder)  # type: ignore[arg-type]
    finally:
        store.close()
    assert database_page_size(sqlite_backend.path) == OLD_PAGE_SIZE
    store, _, loaded = sqlite_backend.open()
    try:
        ids = list(loaded.messages[("/", "q")].message_ids)
        assert ids == list(bodies)[1:] + added
        read = store.read_messages(ids)
        assert all(read[i].body == first[i] for i in list(bodies)[1:])
        assert [len(read[i].body) for i in added] == [100, 1024, 65536]
    finally:
        store.close()
    with sqlite3.connect(sqlite_backend.path) as check:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    check.close()


def test_group_commit_is_one_transaction_per_batch(sqlite_backend: SQLiteBackend) -> None:
    """Appends queued while a commit is in progress all go into the next transaction."""
    store, recorder, _ = sqlite_backend.open()
    conn = sqlite_backend.writer_connection()
    store.put_queue(QueueRecord("/", "q"))
    settle(store, recorder)  # type: ignore[arg-type]
    conn.gate = threading.Event()
    conn.at_gate = threading.Event()
    commits = conn.commits
    store.append("/", ["q"], "", "q", PERSISTENT, b"first", "first")
    assert conn.at_gate.wait(WAIT_SECONDS)
    for i in range(1000):
        store.append("/", ["q"], "", "q", PERSISTENT, b"x", i)
    conn.gate.set()
    conn.gate = None
    recorder.wait_until(lambda: 999 in recorder.committed)
    assert conn.commits - commits == 2
    assert recorder.batches[-2:] == [["first"], list(range(1000))]


def test_tokens_only_after_commit_returns(sqlite_backend: SQLiteBackend) -> None:
    """A confirm token is not reported while its batch's COMMIT has not returned."""
    store, recorder, _ = sqlite_backend.open()
    conn = sqlite_backend.writer_connection()
    store.put_queue(QueueRecord("/", "q"))
    settle(store, recorder)  # type: ignore[arg-type]
    conn.gate = threading.Event()
    conn.at_gate = threading.Event()
    store.append("/", ["q"], "", "q", PERSISTENT, b"x", "token")
    assert conn.at_gate.wait(WAIT_SECONDS)
    assert "token" not in recorder.committed
    conn.gate.set()
    recorder.wait_reported("token")
    assert recorder.committed[-1] == "token"


def test_writing_is_true_while_a_batch_is_written(sqlite_backend: SQLiteBackend) -> None:
    """``writing`` (the server's cue not to busy-poll) holds from queueing to commit."""
    store, recorder, _ = sqlite_backend.open()
    conn = sqlite_backend.writer_connection()
    store.put_queue(QueueRecord("/", "q"))
    settle(store, recorder)  # type: ignore[arg-type]
    _eventually(lambda: not store.writing)
    conn.gate = threading.Event()
    conn.at_gate = threading.Event()
    store.append("/", ["q"], "", "q", PERSISTENT, b"x", "token")
    assert store.writing
    assert conn.at_gate.wait(WAIT_SECONDS)
    assert store.writing
    conn.gate.set()
    conn.gate = None
    recorder.wait_reported("token")
    _eventually(lambda: not store.writing)


def _eventually(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds; the writer thread sets what it reads."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_results_go_through_dispatch(tmp_path: Path) -> None:
    """Listener calls are handed to ``dispatch`` (callFromThread), never made directly."""
    calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []
    done = threading.Event()
    recorder = Recorder()

    def dispatch(f: Callable[..., object], *args: object) -> None:
        calls.append((f, args))
        done.set()

    store = SQLiteStore(tmp_path / "s.sqlite3", recorder, dispatch)
    store.load()
    store.barrier("b")
    assert done.wait(WAIT_SECONDS)
    store.close()
    assert calls == [(recorder.batch_committed, (["b"],))]
    assert recorder.committed == []


def test_close_while_blocked_fails_tokens_and_returns(sqlite_backend: SQLiteBackend) -> None:
    """Closing a store stuck on a full disk reports the pending tokens failed and returns."""
    store, recorder, _ = sqlite_backend.open()
    store.put_queue(QueueRecord("/", "q"))
    settle(store, recorder)  # type: ignore[arg-type]
    sqlite_backend.fail_commits(store, OSError(errno.ENOSPC, "full"), times=1000)
    store.append("/", ["q"], "", "q", PERSISTENT, b"x", 1)
    recorder.wait_until(lambda: StoreState.BLOCKED in recorder.states)
    store.append("/", ["q"], "", "q", PERSISTENT, b"y", 2)
    store.close()
    assert recorder.failed == [1, 2]
    other, loaded = load_copy(sqlite_backend.path)
    other.close()
    assert not loaded.clean_shutdown


def test_sqlite_full_error_code_is_disk_full(sqlite_backend: SQLiteBackend) -> None:
    """SQLite's own "database or disk is full" blocks like ENOSPC instead of failing."""
    store, recorder, _ = sqlite_backend.open()
    sqlite_backend.fail_commits(store, sqlite3.OperationalError("database or disk is full"), 1)
    store.barrier("b")
    recorder.wait_until(lambda: StoreState.OK in recorder.states)
    assert recorder.states == [StoreState.BLOCKED, StoreState.OK]
    assert recorder.failed == ["b"]


def test_sync_interval_mode(tmp_path: Path) -> None:
    """The relaxed mode commits with synchronous=NORMAL and still reports every token."""
    recorder = Recorder()
    store = SQLiteStore(tmp_path / "s.sqlite3", recorder, sync_interval_seconds=0.005)
    store.load()
    store.put_queue(QueueRecord("/", "q"))
    for i in range(100):
        store.append("/", ["q"], "", "q", PERSISTENT, b"x", i)
    settle(store, recorder)
    store.close()
    assert recorder.committed[:100] == list(range(100))
    store, loaded = load_copy(str(tmp_path / "s.sqlite3"))
    store.close()
    assert loaded.message_count == 100


# -- files: lock, unclean shut-down, torn WAL tail, corruption ----------------------------


def test_second_store_on_same_file_is_refused(sqlite_backend: SQLiteBackend) -> None:
    """Two stores (two brokers) on one file: the second gets StoreLockedError."""
    store, _, _ = sqlite_backend.open()
    with pytest.raises(StoreLockedError):
        SQLiteStore(sqlite_backend.path, Recorder()).load()
    store.close()
    other, _ = load_copy(sqlite_backend.path)
    other.close()


def test_unclean_shutdown_is_reported(sqlite_backend: SQLiteBackend, tmp_path: Path) -> None:
    """A store that was not closed (a crash) loads with clean_shutdown False and no warning."""
    store, recorder, _ = sqlite_backend.open()
    store.put_queue(QueueRecord("/", "q"))
    store.append("/", ["q"], "", "q", PERSISTENT, b"x")
    settle(store, recorder)  # type: ignore[arg-type]
    copy = crash_image(sqlite_backend.path, tmp_path / "crash")
    other, loaded = load_copy(copy)
    other.close()
    assert not loaded.clean_shutdown
    assert loaded.message_count == 1
    assert loaded.warnings == ()


def _two_batches(
    backend: SQLiteBackend, page_size: int = DEFAULT_PAGE_SIZE
) -> tuple[list[int], list[int], list[int]]:
    """Commit messages A, then B (several WAL frames); return A, B and the ids in the
    last transaction (the writer may have split B in two)."""
    store, recorder, _ = backend.open(page_size=page_size)
    store.put_queue(QueueRecord("/", "q"))
    a = [store.append("/", ["q"], "", "q", PERSISTENT, b"a" * 100) for _ in range(5)]
    settle(store, recorder)  # type: ignore[arg-type]
    b = []
    for i in range(10):
        b.append(store.append("/", ["q"], "", "q", PERSISTENT, os.urandom(3000), 100 + i))
    recorder.wait_until(lambda: 109 in recorder.committed)
    last = [t - 100 + b[0] for t in recorder.batches[-1]]  # type: ignore[operator]
    return a, b, last


@PAGE_SIZES
@pytest.mark.parametrize(
    "damage",
    ["cut-last-frame", "garbage-tail", "zeroed-tail", "uncommitted-frames"],
)
def test_torn_wal_tail(
    sqlite_backend: SQLiteBackend, tmp_path: Path, damage: str, page_size: int
) -> None:
    """A torn, garbage, zeroed or uncommitted WAL tail is dropped with one warning; every
    transaction committed before it loads (old 8 KiB-page stores as well as new ones)."""
    a, b, last = _two_batches(sqlite_backend, page_size)
    copy = crash_image(sqlite_backend.path, tmp_path / "crash")
    page = database_page_size(copy)
    assert page == page_size
    wal = copy + "-wal"
    size = os.path.getsize(wal)
    expected = a + b
    with open(wal, "r+b") as f:
        if damage == "cut-last-frame":
            f.truncate(size - 1000)  # the last commit frame is torn: that transaction is lost
            expected = [i for i in a + b if i not in last]
        elif damage == "garbage-tail":
            f.seek(size)
            f.write(os.urandom(5000))
        elif damage == "zeroed-tail":
            f.seek(size)
            f.write(bytes(24 + page))
        else:
            # A frame of B written again without a commit: as a crash mid-transaction leaves.
            frame = 24 + page
            f.seek(size - frame)
            frame_bytes = f.read(frame)
            f.seek(size)
            f.write(frame_bytes[:4] + bytes(4) + frame_bytes[8:])
    store, loaded = load_copy(copy)
    try:
        assert list(loaded.messages[("/", "q")].message_ids) == expected
        assert set(store.read_messages(expected)) == set(expected)
        assert len(loaded.warnings) == 1
        assert "write-ahead log" in loaded.warnings[0] and "discarded" in loaded.warnings[0]
    finally:
        store.close()


def _frame_salts(wal: str, page_size: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The WAL header's salts and those of every whole frame in the file."""
    with open(wal, "rb") as f:
        data = f.read()
    frame = 24 + page_size
    salts = [
        struct.unpack(">II", data[offset + 8 : offset + 16])
        for offset in range(32, len(data) - frame + 1, frame)
    ]
    return struct.unpack(">II", data[16:24]), salts


def test_stale_frames_of_an_older_wal_generation_give_no_warning(
    sqlite_backend: SQLiteBackend, tmp_path: Path
) -> None:
    """After a checkpoint the WAL restarts from its beginning and keeps its file: the
    older generation's frames behind the live ones are neither lost data nor damage."""
    store, recorder, _ = sqlite_backend.open()
    store.put_queue(QueueRecord("/", "q"))
    ids = []
    for _ in range(12):  # past WAL_CHECKPOINT_BYTES: a checkpoint, then a restart
        ids += [store.append("/", ["q"], "", "q", PERSISTENT, os.urandom(60_000)) for _ in range(20)]
        settle(store, recorder)  # type: ignore[arg-type]
    ids.append(store.append("/", ["q"], "", "q", PERSISTENT, b"last"))
    settle(store, recorder)  # type: ignore[arg-type]
    copy = crash_image(sqlite_backend.path, tmp_path / "crash")
    current, salts = _frame_salts(copy + "-wal", database_page_size(copy))
    assert current in salts, "the live generation has frames"
    assert any(s[0] == current[0] - 1 for s in salts), "frames of the older generation remain"
    other, loaded = load_copy(copy)
    try:
        assert list(loaded.messages[("/", "q")].message_ids) == ids
        assert loaded.warnings == ()
    finally:
        other.close()


def test_intact_wal_gives_no_warning(sqlite_backend: SQLiteBackend, tmp_path: Path) -> None:
    """A WAL left by a crash without damage is replayed silently."""
    a, b, _ = _two_batches(sqlite_backend)
    copy = crash_image(sqlite_backend.path, tmp_path / "crash")
    store, loaded = load_copy(copy)
    store.close()
    assert list(loaded.messages[("/", "q")].message_ids) == a + b
    assert loaded.warnings == ()


def _store_with_marked_bodies(
    path: str, n: int = 300, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    store = SQLiteStore(path, Recorder(), page_size=page_size)
    store.load()
    store.put_queue(QueueRecord("/", "q"))
    for i in range(n):
        store.append("/", ["q"], "", "q", PERSISTENT, (b"MARK%05d" % i) * 100)
    store.close()


def _damage_page_of(path: str, marker: bytes) -> int:
    """Overwrite the b-tree header of the page holding ``marker``; return its number."""
    with open(path, "r+b") as f:
        data = f.read()
        page_size = database_page_size(path)
        page = data.index(marker) // page_size + 1
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * 16)
    return page


@PAGE_SIZES
def test_corrupt_page_is_reported_with_file_and_position(tmp_path: Path, page_size: int) -> None:
    """A damaged page in the middle of the file: StoreCorruptError naming the file, page
    and byte offset (at the file's own page size); the broker refuses to start."""
    path = str(tmp_path / "s.sqlite3")
    _store_with_marked_bodies(path, page_size=page_size)
    page = _damage_page_of(path, b"MARK00150")
    store = SQLiteStore(path, Recorder())
    with pytest.raises(StoreCorruptError) as info:
        store.load()
    error = info.value
    assert error.path == path
    assert page in error.pages
    assert error.offsets[error.pages.index(page)] == (page - 1) * page_size
    assert path in str(error) and f"page {page}" in str(error)
    store.close()
    # Refusing changed nothing: it refuses again.
    with pytest.raises(StoreCorruptError):
        SQLiteStore(path, Recorder()).load()


def test_skip_corrupt_salvages_the_rest(tmp_path: Path) -> None:
    """With skip_corrupt the readable messages and topology load, the damaged file is
    kept aside, and what was lost is said in the warnings."""
    path = str(tmp_path / "s.sqlite3")
    _store_with_marked_bodies(path)
    _damage_page_of(path, b"MARK00150")
    # One page of 900-byte bodies is lost, not more.
    per_page = database_page_size(path) // 900 + 1
    store, loaded = load_copy(path, skip_corrupt=True)
    try:
        index = loaded.messages[("/", "q")]
        assert 300 - per_page <= len(index) < 300
        read = store.read_messages(list(index.message_ids))
        assert set(read) == set(index.message_ids)
        assert all(m.body == (b"MARK%05d" % (m.message_id - 1)) * 100 for m in read.values())
        assert any("corrupt" in w and path in w for w in loaded.warnings)
        assert os.path.exists(path + ".corrupt-1")
        store.append("/", ["q"], "", "q", PERSISTENT, b"new")
    finally:
        store.close()
    again, loaded = load_copy(path)
    again.close()
    assert len(loaded.messages[("/", "q")]) == len(index) + 1


def test_damaged_body_is_never_delivered(tmp_path: Path) -> None:
    """A flipped byte inside a stored body fails its checksum: reading it raises
    StoreCorruptError naming the message (or, when skipping, leaves it out)."""
    path = str(tmp_path / "s.sqlite3")
    _store_with_marked_bodies(path, n=20)
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(data.index(b"MARK00007") + 50)
        f.write(b"#")
    store, loaded = load_copy(path)
    ids = list(loaded.messages[("/", "q")].message_ids)
    with pytest.raises(StoreCorruptError) as info:
        store.read_messages(ids)
    assert info.value.message_id == 8
    store.close()
    store, _ = load_copy(path, skip_corrupt=True)
    assert set(store.read_messages(ids)) == set(ids) - {8}
    store.close()


def test_not_a_database(tmp_path: Path) -> None:
    """A file of garbage where the store should be is reported as corrupt."""
    path = tmp_path / "s.sqlite3"
    path.write_bytes(os.urandom(20000))
    with pytest.raises(StoreCorruptError) as info:
        SQLiteStore(path, Recorder()).load()
    assert str(path) in str(info.value)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    """An SQLite file that is not an amqplike store is refused, not overwritten."""
    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not an amqplike store"):
        SQLiteStore(path, Recorder()).load()


def test_store_imports_neither_twisted_nor_core() -> None:
    """The store layer loads without Twisted and without the broker core."""
    probe = (
        "import sys, amqplike.store\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'twisted'"
        " or m.startswith('amqplike.core') or m.startswith('amqplike.wire')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_faulty_connection_counts_commits(tmp_path: Path) -> None:
    """The test hook itself: COMMIT statements are counted (guards the group-commit test)."""
    conn = sqlite3.connect(tmp_path / "x.sqlite3", factory=FaultyConnection,
                           isolation_level=None)
    assert isinstance(conn, FaultyConnection)
    conn.execute("BEGIN")
    conn.execute("COMMIT")
    conn.close()
    assert conn.commits == 1


# -- format versions -----------------------------------------------------------------


def test_a_format_1_store_is_migrated_and_its_entries_do_not_expire(tmp_path: Path) -> None:
    """A store written by format 1 (no entries.expires) loads: the column is added, NULL."""
    path = str(tmp_path / "old.sqlite3")
    store, _ = load_copy(path)
    store.put_queue(QueueRecord("/", "q"))
    message_id = store.append("/", ("q",), "", "rk", PERSISTENT, b"old")
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE entries DROP COLUMN expires")
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'schema'")
    conn.commit()
    conn.close()
    store, loaded = load_copy(path)
    index = loaded.messages[("/", "q")]
    assert list(index.message_ids) == [message_id] and index.expires is None
    store.append("/", ("q",), "", "rk", PERSISTENT, b"new", expires=(123.5,))
    store.close()
    store, loaded = load_copy(path)
    index = loaded.messages[("/", "q")]
    assert [index.expiry(i) for i in range(len(index))] == [None, 123.5]
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == 2
    conn.close()
