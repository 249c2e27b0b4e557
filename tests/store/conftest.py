"""Fixtures of the store tests: a recording listener, fault injection, backends.

The contract suite runs against every backend through :class:`Backend`, a
small harness that knows how to open a store, wait until what was queued is
committed, and inject a failing commit.  A PostgreSQL backend plugs in by
adding one harness class to ``BACKENDS``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from amqplike.store import (
    LoadedState,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreState,
    StoreWriteError,
)
from amqplike.store._memory import MemoryDisk
from amqplike.store._sqlite import classify_write_error

WAIT_SECONDS = 10.0


class Recorder:
    """A :class:`~amqplike.store.StoreListener` that records, safe to call from any thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.committed: list[object] = []
        self.batches: list[list[object]] = []
        self.failed: list[object] = []
        self.errors: list[StoreWriteError] = []
        self.states: list[StoreState] = []

    def batch_committed(self, tokens: Sequence[object]) -> None:
        with self._cond:
            self.committed.extend(tokens)
            self.batches.append(list(tokens))
            self._cond.notify_all()

    def batch_failed(self, tokens: Sequence[object], error: StoreWriteError) -> None:
        with self._cond:
            self.failed.extend(tokens)
            self.errors.append(error)
            self._cond.notify_all()

    def state_changed(self, state: StoreState, error: StoreWriteError | None) -> None:
        with self._cond:
            self.states.append(state)
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
        """Wait until ``predicate()`` holds (checked under the lock) or fail the test."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                pytest.fail(f"timed out; committed={self.committed[-5:]} failed={self.failed}")

    def wait_reported(self, token: object) -> None:
        """Wait until ``token`` was reported committed or failed."""
        self.wait_until(lambda: token in self.committed or token in self.failed)


class FaultyConnection(sqlite3.Connection):
    """A connection whose ``COMMIT`` can be made to fail or to wait on a gate.

    ``COMMIT`` statements are counted, which is how tests count transactions.
    """

    fault: BaseException | None = None
    fault_times = 0
    gate: threading.Event | None = None
    at_gate: threading.Event | None = None
    commits = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            if self.gate is not None:
                assert self.at_gate is not None
                self.at_gate.set()
                self.gate.wait(WAIT_SECONDS)
            if self.fault is not None and self.fault_times:
                self.fault_times -= 1
                raise self.fault
            cursor = super().execute(sql, *args)
            self.commits += 1
            return cursor
        return super().execute(sql, *args)


class Backend:
    """How the contract suite drives one kind of store."""

    name = ""

    def open(self, **kwargs: Any) -> tuple[Store, Recorder, LoadedState]:
        """Build and ``load()`` a store on this backend's (persistent) data."""
        raise NotImplementedError

    def settle(self, store: Store, recorder: Recorder) -> None:
        """Return once everything queued so far is committed (or failed)."""
        token = object()
        store.barrier(token)
        self.commit(store)
        recorder.wait_reported(token)

    def commit(self, store: Store) -> None:
        """Make the store commit what it holds (a no-op where a thread does it)."""

    def fail_commits(self, store: Store, exc: BaseException, times: int) -> None:
        """Make the next ``times`` commits fail with ``exc``."""
        raise NotImplementedError

    def body_count(self, store: Store) -> int:
        """How many message bodies the store holds (shared ones count once)."""
        raise NotImplementedError


def database_page_size(path: str | Path) -> int:
    """The page size in a database file's header: bytes 16-17, big-endian, 1 meaning 65536."""
    with open(path, "rb") as f:
        header = f.read(18)
    assert header[:16] == b"SQLite format 3\x00", f"{path} is not an SQLite database"
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


class SQLiteBackend(Backend):
    """The embedded SQLite store in a temporary directory."""

    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "store.sqlite3")
        self.connections: list[FaultyConnection] = []
        self.stores: list[SQLiteStore] = []

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = sqlite3.connect(*args, factory=FaultyConnection, **kwargs)
        assert isinstance(conn, FaultyConnection)
        self.connections.append(conn)
        return conn

    def open(self, **kwargs: Any) -> tuple[Store, Recorder, LoadedState]:
        recorder = Recorder()
        kwargs.setdefault("blocked_retry_seconds", 0.01)
        store = SQLiteStore(self.path, recorder, connect=self.connect, **kwargs)
        self.stores.append(store)
        first = len(self.connections)
        loaded = store.load()
        # load() opens the writer's connection first, then the reader's.
        self._writer = self.connections[first]
        return store, recorder, loaded

    def writer_connection(self) -> FaultyConnection:
        """The connection the last store's writer thread uses."""
        return self._writer

    def fail_commits(self, store: Store, exc: BaseException, times: int) -> None:
        conn = self.writer_connection()
        conn.fault = exc
        conn.fault_times = times

    def body_count(self, store: Store) -> int:
        with sqlite3.connect(self.path) as conn:
            (n,) = conn.execute("SELECT count(*) FROM messages").fetchone()
        conn.close()
        return int(n)

    def close_all(self) -> None:
        for store in self.stores:
            store.close()


class MemoryBackend(Backend):
    """The in-memory store over one :class:`MemoryDisk`."""

    name = "memory"

    def __init__(self) -> None:
        self.disk = MemoryDisk()
        self.stores: list[MemoryStore] = []

    def open(self, **kwargs: Any) -> tuple[Store, Recorder, LoadedState]:
        recorder = Recorder()
        store = MemoryStore(self.disk, recorder)
        self.stores.append(store)
        return store, recorder, store.load()

    def commit(self, store: Store) -> None:
        assert isinstance(store, MemoryStore)
        store.commit()

    def fail_commits(self, store: Store, exc: BaseException, times: int) -> None:
        assert isinstance(store, MemoryStore)
        store.fail_next_commits(classify_write_error(exc), times)

    def body_count(self, store: Store) -> int:
        return len(self.disk.messages)

    def close_all(self) -> None:
        for store in self.stores:
            store.close()


BACKENDS = ("sqlite", "memory")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn; stores left open by a test are closed after it."""
    harness: SQLiteBackend | MemoryBackend
    harness = SQLiteBackend(tmp_path) if request.param == "sqlite" else MemoryBackend()
    yield harness
    harness.close_all()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[SQLiteBackend]:
    """The SQLite backend alone, for tests of what only it has."""
    harness = SQLiteBackend(tmp_path)
    yield harness
    harness.close_all()


@pytest.fixture(autouse=True)
def _no_leaked_writer_threads() -> Iterator[None]:
    """Fail a test that leaves a store writer thread running (close() joins it)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t for t in threading.enumerate()
        if t not in before and t.name.startswith("amqplike-store-writer") and t.is_alive()
    ]
    assert not leaked, f"store writer threads left running: {leaked}"
