"""The embedded default store: SQLite (stdlib) in WAL mode, one group-committing writer.

Why this shape (see ``docs/durability.md``):

- The reactor never waits on the disk.  Write methods put a tuple on a
  :class:`queue.SimpleQueue` and return; one writer thread owns the write
  connection, drains *everything* queued into one transaction, commits
  (``synchronous=FULL``: the WAL is fsynced before ``COMMIT`` returns) and
  then reports the batch's confirm tokens through the injected ``dispatch``.
  Per-message commits would cap throughput at the disk's fsync rate; one
  commit per batch amortises it over however much arrived meanwhile.
- Inside a batch, a publish whose entry is removed again before the commit
  (a consumer that kept up) is never written at all.
- A failed commit is never reported as success.  Disk full (ENOSPC,
  ``SQLITE_FULL``) fails the batch's tokens, keeps its non-publish operations
  (acks, topology) for a retry, and blocks until a write succeeds; any other
  error (EIO, a failed fsync, a bug) is fatal: the writer stops writing for
  good and fails every later token.
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import re
import sqlite3
import threading
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, Final, Literal

from amqplike.properties import BasicProperties
from amqplike.store._codec import (
    PropertiesEncoder,
    decode_properties,
    decode_table,
    encode_table,
    message_checksum,
)
from amqplike.store._interface import StoreListener
from amqplike.store._pages import file_page_size, find_damaged_pages
from amqplike.store._records import (
    DELIVERY_COUNT_TYPECODE,
    EXPIRY_TYPECODE,
    MESSAGE_ID_TYPECODE,
    NO_EXPIRY,
    BindingRecord,
    ExchangeRecord,
    LoadedState,
    QueueIndex,
    QueueKey,
    QueueRecord,
    StoreClosedError,
    StoreCorruptError,
    StoredMessage,
    StoreError,
    StoreLockedError,
    StoreState,
    StoreStats,
    StoreWriteError,
)
from amqplike.store._salvage import salvage
from amqplike.store._schema import (
    APPLICATION_ID,
    DEFAULT_PAGE_SIZE,
    DELETE_ENTRY,
    INSERT_ENTRY,
    INSERT_MESSAGE,
    MIGRATE_1_TO_2,
    SCHEMA,
    SCHEMA_VERSION,
    UPDATE_ENTRY,
    WAL_CHECKPOINT_BYTES,
    WAL_KEEP_BYTES,
)
from amqplike.store._wal import discarded_tail, inspect_wal

#: The file name of the store inside a data directory.
DEFAULT_FILE_NAME: Final = "amqplike.sqlite3"

#: Most operations one transaction takes; more wait for the next batch.
MAX_BATCH_OPERATIONS: Final = 20_000
#: How long a blocked (disk full) writer waits between attempts.
BLOCKED_RETRY_SECONDS: Final = 1.0
#: Ids per ``SELECT ... IN (...)`` when reading messages back.
_READ_CHUNK: Final = 500

_SQLITE_FULL: Final = 13
_DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})

# Operation kinds: the first item of each queued tuple.
_PUBLISH: Final = 0
_REMOVE: Final = 1
_DELIVERED: Final = 2
_BARRIER: Final = 3
_PUT_EXCHANGE: Final = 4
_DELETE_EXCHANGE: Final = 5
_PUT_QUEUE: Final = 6
_DELETE_QUEUE: Final = 7
_PUT_BINDING: Final = 8
_DELETE_BINDING: Final = 9
_PURGE: Final = 10
_CLOSE: Final = 11

#: Operations dropped, not retried, when a batch fails for a full disk.
_DROPPED_ON_FAILURE: Final = frozenset({_PUBLISH, _BARRIER})

Op = tuple[Any, ...]
Connect = Callable[..., sqlite3.Connection]
Dispatch = Callable[..., object]

_PAGE_RE: Final = re.compile(r"\bpage (\d+)", re.IGNORECASE)


def call_now(f: Callable[..., object], *args: object) -> None:
    """A ``dispatch`` that calls at once, in the writer thread (for tests and scripts)."""
    f(*args)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == _SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    return False


def classify_write_error(exc: BaseException) -> StoreWriteError:
    """Wrap an exception raised while writing: disk full (retry later) or fatal."""
    if _is_disk_full(exc):
        return StoreWriteError(f"disk full: {exc}", disk_full=True, cause=exc)
    return StoreWriteError(f"write failed: {exc!r}", disk_full=False, cause=exc)


def _tokens(batch: Iterable[Op]) -> list[object]:
    """The confirm tokens of a batch, in order."""
    tokens: list[object] = []
    for op in batch:
        kind = op[0]
        if kind == _PUBLISH:
            if op[8] is not None:
                tokens.append(op[8])
        elif kind == _BARRIER:
            tokens.append(op[1])
    return tokens


class SQLiteStore:
    """The embedded :class:`~amqplike.store.Store`: one SQLite file, one writer thread.

    ``path`` is the database file (its directory is created if missing);
    ``listener`` hears of committed and failed batches and state changes
    through ``dispatch`` (``reactor.callFromThread`` in the broker,
    :func:`call_now` in tests).  ``sync_interval_seconds``: None (the
    default) fsyncs every commit (``synchronous=FULL``); a number commits at
    most that often with ``synchronous=NORMAL``, and then a confirmed message
    survives a broker crash but *not an OS crash or power cut*.
    ``skip_corrupt`` salvages what is readable from a damaged file instead of
    refusing to start.  ``integrity_check`` is the check run by :meth:`load`:
    ``quick`` (``PRAGMA quick_check``, the default), ``full``
    (``integrity_check``, also checks indexes against tables) or ``none``.
    ``page_size`` applies to a new file only (default :data:`DEFAULT_PAGE_SIZE`); an
    existing file keeps the one it was created with.  ``connect`` builds connections
    (tests inject faults through it) and is called like :func:`sqlite3.connect`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        listener: StoreListener,
        dispatch: Dispatch = call_now,
        *,
        sync_interval_seconds: float | None = None,
        skip_corrupt: bool = False,
        integrity_check: Literal["quick", "full", "none"] = "quick",
        connect: Connect = sqlite3.connect,
        max_batch_operations: int = MAX_BATCH_OPERATIONS,
        blocked_retry_seconds: float = BLOCKED_RETRY_SECONDS,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if integrity_check not in ("quick", "full", "none"):
            raise ValueError(f"integrity_check must be quick, full or none: {integrity_check!r}")
        self.path = os.fspath(path)
        self._listener = listener
        self._dispatch = dispatch
        self._sync_interval = sync_interval_seconds
        self._skip_corrupt = skip_corrupt
        self._integrity_check = integrity_check
        self._connect = connect
        self._max_batch = max_batch_operations
        self._retry_seconds = blocked_retry_seconds
        self._ops: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._put = self._ops.put
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._open = False
        self._closed = False
        self._close_seen = False
        self._next_id = 1
        self._qids: dict[QueueKey, int] = {}
        self._state = StoreState.OK
        self._fatal: StoreWriteError | None = None
        self._commits = 0
        self._operations = 0
        self._failed_batches = 0
        self._largest_batch = 0
        self._writing = False
        self._page_size = page_size
        self._encode_properties = PropertiesEncoder()

    @classmethod
    def in_directory(
        cls, data_dir: str | os.PathLike[str], listener: StoreListener, **kwargs: Any
    ) -> SQLiteStore:
        """A store in ``data_dir`` under :data:`DEFAULT_FILE_NAME`."""
        return cls(os.path.join(os.fspath(data_dir), DEFAULT_FILE_NAME), listener, **kwargs)

    # -- reading state -----------------------------------------------------------

    @property
    def state(self) -> StoreState:
        """The writer's state; :meth:`StoreListener.state_changed` reports each change."""
        return self._state

    @property
    def writing(self) -> bool:
        """Whether operations are queued or a batch is being written (a hint)."""
        return self._writing or not self._ops.empty()

    @property
    def stats(self) -> StoreStats:
        """Counters since :meth:`load`."""
        return StoreStats(
            self._commits, self._operations, self._failed_batches, self._largest_batch
        )

    # -- start-up ------------------------------------------------------------------

    def load(self) -> LoadedState:
        """Open, check and read the store, then start the writer thread (blocking).

        Order: take the lock file; note the WAL's size; open (SQLite
        recovers the WAL, dropping a torn tail); compare to warn once about a
        discarded tail; run ``PRAGMA quick_check``; read topology and each
        queue's index.  Damage raises :class:`StoreCorruptError` naming the
        file and pages, unless ``skip_corrupt`` (then the file is salvaged
        and the damaged one kept beside it as ``<file>.corrupt-N``).
        """
        if self._open or self._closed:
            raise StoreClosedError("load() is called once, on a new store")
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._take_lock()
        try:
            try:
                loaded = self._open_and_read()
            except StoreCorruptError as exc:
                if not self._skip_corrupt:
                    raise
                self._close_connections()
                notes = salvage(self.path, self._connect, self._page_size)
                loaded = self._open_and_read()
                notes = [f"{exc}; skipped as asked", *notes]
                loaded = LoadedState(
                    loaded.exchanges,
                    loaded.queues,
                    loaded.bindings,
                    loaded.messages,
                    loaded.message_count,
                    loaded.clean_shutdown,
                    (*loaded.warnings, *notes),
                )
            self._reader = self._new_connection(reader=True)
        except BaseException:
            self._close_connections()
            self._release_lock()
            raise
        self._open = True
        self._thread = threading.Thread(
            target=self._run, name=f"amqplike-store-writer {self.path}", daemon=True
        )
        self._thread.start()
        return loaded

    def _take_lock(self) -> None:
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreLockedError(f"{self.path} is in use by another process") from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _new_connection(self, *, reader: bool = False) -> sqlite3.Connection:
        conn = self._connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if reader:
                conn.execute("PRAGMA query_only = 1")
                conn.execute("PRAGMA cache_size = -8000")
            else:
                # Only takes effect when the file is created (before WAL mode).
                conn.execute(f"PRAGMA page_size = {int(self._page_size)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(
                    "PRAGMA synchronous = "
                    + ("NORMAL" if self._sync_interval is not None else "FULL")
                )
                # Keep the WAL file when it restarts (up to WAL_KEEP_BYTES):
                # overwriting its blocks makes each commit's fsync a data flush,
                # where a file cut back to zero and grown again also commits
                # file-system metadata (one publish confirmed at a time:
                # 1,760-2,020 -> 2,550-2,820 msg/s).  _wal.py tells stale frames
                # from a discarded tail by their salts.
                conn.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
                conn.execute("PRAGMA cache_size = -32000")
                conn.execute("PRAGMA temp_store = MEMORY")
        except BaseException:
            conn.close()
            raise
        return conn

    def _corrupt(self, exc: BaseException | str) -> StoreCorruptError:
        """A :class:`StoreCorruptError` for this file, with the damaged pages found.

        SQLite names pages in ``quick_check`` reports but often raises just
        "malformed"; then the b-trees are walked to find the pages.
        """
        detail = str(exc)
        pages = sorted({int(p) for p in _PAGE_RE.findall(detail)})
        if not pages:
            found = find_damaged_pages(self.path)
            pages = sorted({page for page, _ in found})
            if found:
                detail += "; " + "; ".join(f"page {page}: {what}" for page, what in found[:5])
        # The file's own page size: an older store may not have the one asked for.
        page_size = file_page_size(self.path) or self._page_size
        offsets = tuple((p - 1) * page_size for p in pages)
        return StoreCorruptError(self.path, detail, pages=tuple(pages), offsets=offsets)

    def _open_and_read(self) -> LoadedState:
        warnings: list[str] = []
        wal = inspect_wal(self.path)
        try:
            conn = self._conn = self._new_connection()
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            # Checkpoint after a fixed number of WAL bytes, not pages, whatever the page size.
            conn.execute(
                "PRAGMA wal_autocheckpoint = "
                f"{max(1, WAL_CHECKPOINT_BYTES // int(self._page_size))}"
            )
            kept = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc
        tail = discarded_tail(wal, max(kept, 0))
        if tail is not None:
            warnings.append(tail)
        try:
            self._check(conn)
            clean = self._ensure_schema(conn)
            loaded = self._read_state(conn, clean, warnings)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = 0 WHERE key = 'clean'")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _looks_corrupt(exc):
                raise
            raise self._corrupt(exc) from exc
        return loaded

    def _check(self, conn: sqlite3.Connection) -> None:
        if self._integrity_check == "none":
            return
        pragma = "quick_check" if self._integrity_check == "quick" else "integrity_check"
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}(100)")]
        if rows != ["ok"]:
            raise self._corrupt("; ".join(rows))

    def _ensure_schema(self, conn: sqlite3.Connection) -> bool:
        """Create the schema in a new file; check the format of an old one.

        Return whether the previous run shut down cleanly (True for a new file).
        """
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables == 0:
            conn.executescript(
                f"BEGIN IMMEDIATE; PRAGMA application_id = {APPLICATION_ID}; {SCHEMA};"
                f" INSERT INTO meta (key, value) VALUES ('schema', {SCHEMA_VERSION});"
                " INSERT INTO meta (key, value) VALUES ('clean', 1); COMMIT;"
            )
            return True
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            raise StoreError(f"{self.path} is not an amqplike store (application_id {app:#x})")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") == 1:
            self._migrate_1_to_2(conn)
            meta["schema"] = 2
        if meta.get("schema") != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store format {meta.get('schema')!r}; "
                f"this version reads format {SCHEMA_VERSION}"
            )
        return bool(meta.get("clean"))

    @staticmethod
    def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
        """Format 1 -> 2: add ``entries.expires`` (NULL: no expiry, as format 1 meant)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
            if "expires" not in columns:
                conn.execute(MIGRATE_1_TO_2)
            conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema'")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _read_state(
        self, conn: sqlite3.Connection, clean: bool, warnings: list[str]
    ) -> LoadedState:
        exchanges = tuple(
            ExchangeRecord(vhost, name, type_, bool(ad), bool(internal), decode_table(args))
            for vhost, name, type_, ad, internal, args in conn.execute(
                "SELECT vhost, name, type, auto_delete, internal, arguments"
                " FROM exchanges ORDER BY id"
            )
        )
        queues: list[QueueRecord] = []
        by_id: dict[int, QueueKey] = {}
        for qid, vhost, name, ad, args in conn.execute(
            "SELECT id, vhost, name, auto_delete, arguments FROM queues ORDER BY id"
        ):
            queues.append(QueueRecord(vhost, name, bool(ad), decode_table(args)))
            by_id[qid] = (vhost, name)
        bindings = tuple(
            BindingRecord(vhost, source, destination, kind, key, decode_table(args))
            for vhost, source, kind, destination, key, args in conn.execute(
                "SELECT vhost, source, destination_kind, destination, routing_key, arguments"
                " FROM bindings ORDER BY id"
            )
        )
        messages: dict[QueueKey, QueueIndex] = {key: QueueIndex.empty() for key in by_id.values()}
        count = 0
        orphans = 0
        for qid, key in by_id.items():
            ids = array(MESSAGE_ID_TYPECODE)
            counts = array(DELIVERY_COUNT_TYPECODE)
            expires: array[float] | None = None
            add_id = ids.append
            add_count = counts.append
            for message_id, deliveries, expiry in conn.execute(
                "SELECT message, deliveries, expires FROM entries WHERE queue = ?"
                " ORDER BY message",
                (qid,),
            ):
                if expiry is not None and expires is None:
                    expires = array(EXPIRY_TYPECODE, [NO_EXPIRY]) * len(ids)
                if expires is not None:
                    expires.append(NO_EXPIRY if expiry is None else float(expiry))
                add_id(message_id)
                add_count(deliveries)
            messages[key] = QueueIndex(ids, counts, expires)
            count += len(ids)
        (entry_total,) = conn.execute("SELECT count(*) FROM entries").fetchone()
        orphans = entry_total - count
        if orphans:
            warnings.append(f"{orphans} stored entries of unknown queues were ignored")
        (max_id,) = conn.execute("SELECT max(id) FROM messages").fetchone()
        self._next_id = (max_id or 0) + 1
        self._qids = {key: qid for qid, key in by_id.items()}
        return LoadedState(
            exchanges, tuple(queues), bindings, messages, count, clean, tuple(warnings)
        )

    # -- the write operations (owner thread; they only queue) ---------------------

    def _check_open(self) -> None:
        if not self._open:
            raise StoreClosedError(
                "store is closed" if self._closed else "store is not loaded yet"
            )

    def put_exchange(self, record: ExchangeRecord) -> None:
        """Queue: record a durable exchange (insert or replace)."""
        self._check_open()
        self._put((_PUT_EXCHANGE, record))

    def delete_exchange(self, vhost: str, name: str) -> None:
        """Queue: forget an exchange and every binding from or to it."""
        self._check_open()
        self._put((_DELETE_EXCHANGE, vhost, name))

    def put_queue(self, record: QueueRecord) -> None:
        """Queue: record a durable queue (insert, or replace its flags keeping its messages)."""
        self._check_open()
        self._put((_PUT_QUEUE, record))

    def delete_queue(self, vhost: str, name: str) -> None:
        """Queue: forget a queue, its bindings and its messages."""
        self._check_open()
        self._put((_DELETE_QUEUE, vhost, name))

    def put_binding(self, record: BindingRecord) -> None:
        """Queue: record a binding (a no-op if stored)."""
        self._check_open()
        self._put((_PUT_BINDING, record))

    def delete_binding(self, record: BindingRecord) -> None:
        """Queue: forget a binding (a no-op if not stored)."""
        self._check_open()
        self._put((_DELETE_BINDING, record))

    def append(
        self,
        vhost: str,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        body: bytes,
        token: object = None,
        expires: Sequence[float | None] | None = None,
    ) -> int:
        """Queue the publish of one message to ``queues`` of ``vhost``; return its id.

        ``token`` comes back through the listener once the batch holding the
        message committed (or failed).  ``expires`` (None, or one item per
        queue) holds each entry's absolute expiry time.  Encoding and
        checksumming happen in the writer thread, not here.
        """
        if not self._open:
            self._check_open()
        message_id = self._next_id
        self._next_id = message_id + 1
        self._put(
            (_PUBLISH, message_id, vhost, tuple(queues), exchange, routing_key, properties,
             body, token, expires)
        )
        return message_id

    def remove(self, vhost: str, queue: str, message_id: int) -> None:
        """Queue: a message left a queue (acked, auto-acked, rejected, expired)."""
        if not self._open:
            self._check_open()
        self._put((_REMOVE, vhost, queue, message_id))

    def record_delivery(
        self, vhost: str, queue: str, message_id: int, delivery_count: int
    ) -> None:
        """Queue: a message of a queue was delivered; ``delivery_count`` is its new count."""
        if not self._open:
            self._check_open()
        self._put((_DELIVERED, vhost, queue, message_id, delivery_count))

    def purge_queue(self, vhost: str, queue: str, keep: Collection[int] = ()) -> None:
        """Queue: remove a queue's messages except ``keep`` (its delivered, unacked ones)."""
        self._check_open()
        self._put((_PURGE, vhost, queue, tuple(keep)))

    def barrier(self, token: object) -> None:
        """Queue: report ``token`` once everything queued before it is committed."""
        self._check_open()
        self._put((_BARRIER, token))

    # -- reading messages back (owner thread, blocking) ------------------------------

    def read_messages(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        """Read stored messages by id, checking each one's CRC.

        A message whose checksum does not match raises
        :class:`StoreCorruptError` naming it, or is left out of the result
        when the store skips corruption; ids not stored are left out.
        """
        self._check_open()
        reader = self._reader
        assert reader is not None
        result: dict[int, StoredMessage] = {}
        for start in range(0, len(message_ids), _READ_CHUNK):
            chunk = list(message_ids[start : start + _READ_CHUNK])
            try:
                rows = self._select_messages(reader, chunk)
            except sqlite3.DatabaseError as exc:
                if not self._skip_corrupt:
                    raise self._corrupt(exc) from exc
                rows = []
                for message_id in chunk:
                    try:
                        rows.extend(self._select_messages(reader, [message_id]))
                    except sqlite3.DatabaseError:
                        continue
            for message_id, crc, exchange, routing_key, properties, body in rows:
                if message_checksum(exchange, routing_key, properties, body) != crc:
                    if self._skip_corrupt:
                        continue
                    raise StoreCorruptError(
                        self.path, "message checksum mismatch", message_id=message_id
                    )
                result[message_id] = StoredMessage(
                    message_id, exchange, routing_key, decode_properties(properties), body
                )
        return result

    @staticmethod
    def _select_messages(reader: sqlite3.Connection, ids: list[int]) -> list[Any]:
        marks = ",".join("?" * len(ids))
        return reader.execute(
            "SELECT id, crc, exchange, routing_key, properties, body FROM messages"
            f" WHERE id IN ({marks})",
            ids,
        ).fetchall()

    # -- shut-down -----------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued, mark a clean shut-down, join the writer, close files.

        Blocking; idempotent.  Tokens queued before it are reported (committed
        or failed) before it returns.
        """
        if self._closed:
            return
        self._closed = True
        was_open = self._open
        self._open = False
        if was_open:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._stop.set()
            self._put((_CLOSE,))
            assert self._thread is not None
            self._thread.join()
        self._close_connections()
        self._release_lock()

    def _close_connections(self) -> None:
        for conn in (self._reader, self._conn):
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._reader = self._conn = None

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        """The writer thread: batches until close; a bug is fatal, never silent."""
        try:
            self._loop()
        except BaseException as exc:
            self._become_failed(classify_write_error(exc))
            if not self._close_seen:
                self._fail_remaining()

    def _next_batch(self, carry: list[Op]) -> tuple[list[Op], bool]:
        """Take what is queued (waiting for the first item), up to the batch limit.

        Return the operations and whether close was asked for.
        """
        batch = carry
        get = self._ops.get
        if self._state is StoreState.BLOCKED:
            # Blocked on a full disk: retry at most once per interval, with what
            # was kept from the failed batch, what came since, or an empty probe.
            self._stop.wait(self._retry_seconds)
        else:
            batch = [get()]
        limit = self._max_batch
        try:
            while len(batch) < limit:
                batch.append(get(False))
        except queue.Empty:
            pass
        if batch and batch[-1][0] == _CLOSE:
            batch.pop()
            self._close_seen = True
            return batch, True
        return batch, False

    def _loop(self) -> None:
        carry: list[Op] = []
        closing = False
        while not closing:
            self._writing = False
            batch, closing = self._next_batch(carry)
            self._writing = True
            carry = []
            if self._state is StoreState.FAILED:
                self._report_failed(batch)
                continue
            try:
                self._write(batch, final=closing)
            except Exception as exc:
                error = classify_write_error(exc)
                self._rollback()
                self._failed_batches += 1
                if error.disk_full and not closing:
                    carry = [op for op in batch if op[0] not in _DROPPED_ON_FAILURE]
                    self._report_failed(batch, error)
                    self._set_state(StoreState.BLOCKED, error)
                elif error.disk_full:
                    self._report_failed(batch, error)
                else:
                    self._become_failed(error)
                    self._report_failed(batch, error)
                continue
            if self._state is StoreState.BLOCKED:
                self._set_state(StoreState.OK, None)
            tokens = _tokens(batch)
            if tokens:
                self._dispatch(self._listener.batch_committed, tokens)
            if self._sync_interval is not None and not closing:
                self._stop.wait(self._sync_interval)
        if self._state is not StoreState.FAILED and self._conn is not None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass

    def _report_failed(self, batch: list[Op], error: StoreWriteError | None = None) -> None:
        tokens = _tokens(batch)
        if tokens:
            error = error or self._fatal
            assert error is not None
            self._dispatch(self._listener.batch_failed, tokens, error)

    def _set_state(self, state: StoreState, error: StoreWriteError | None) -> None:
        if state is not self._state:
            self._state = state
            self._dispatch(self._listener.state_changed, state, error)

    def _become_failed(self, error: StoreWriteError) -> None:
        """Stop writing for good: after a failed fsync nothing on disk can be trusted."""
        self._fatal = error
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._set_state(StoreState.FAILED, error)

    def _fail_remaining(self) -> None:
        """After a writer bug, fail every queued token until close."""
        while True:
            op = self._ops.get()
            if op[0] == _CLOSE:
                return
            self._report_failed([op])

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _write(self, batch: list[Op], *, final: bool) -> None:
        """Apply a batch in one transaction and commit it."""
        conn = self._conn
        assert conn is not None
        saved_qids: dict[QueueKey, int] | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            run = _Run(self._qids)
            for op in batch:
                kind = op[0]
                if kind == _PUBLISH:
                    run.publish(op)
                elif kind == _REMOVE:
                    run.remove(op)
                elif kind == _DELIVERED:
                    run.delivered(op)
                elif kind != _BARRIER:
                    run.flush(conn, self._encode_properties)
                    if saved_qids is None and kind in (_PUT_QUEUE, _DELETE_QUEUE):
                        saved_qids = dict(self._qids)
                    self._apply_topology(conn, op)
            run.flush(conn, self._encode_properties)
            if not batch:
                # A probe while blocked: does the disk take a write again?
                conn.execute("UPDATE meta SET value = 0 WHERE key = 'clean'")
            if final:
                conn.execute("UPDATE meta SET value = 1 WHERE key = 'clean'")
            conn.execute("COMMIT")
        except BaseException:
            if saved_qids is not None:
                self._qids = saved_qids
            raise
        self._commits += 1
        self._operations += len(batch)
        if len(batch) > self._largest_batch:
            self._largest_batch = len(batch)

    def _apply_topology(self, conn: sqlite3.Connection, op: Op) -> None:
        kind = op[0]
        if kind == _PUT_EXCHANGE:
            x: ExchangeRecord = op[1]
            conn.execute(
                "INSERT INTO exchanges (vhost, name, type, auto_delete, internal, arguments)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (vhost, name) DO UPDATE SET"
                " type = excluded.type, auto_delete = excluded.auto_delete,"
                " internal = excluded.internal, arguments = excluded.arguments",
                (x.vhost, x.name, x.type, int(x.auto_delete), int(x.internal),
                 encode_table(x.arguments)),
            )
        elif kind == _DELETE_EXCHANGE:
            _, vhost, name = op
            conn.execute("DELETE FROM exchanges WHERE vhost = ? AND name = ?", (vhost, name))
            conn.execute(
                "DELETE FROM bindings WHERE vhost = ? AND (source = ?"
                " OR (destination_kind = 'exchange' AND destination = ?))",
                (vhost, name, name),
            )
        elif kind == _PUT_QUEUE:
            q: QueueRecord = op[1]
            (qid,) = conn.execute(
                "INSERT INTO queues (vhost, name, auto_delete, arguments) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (vhost, name) DO UPDATE SET auto_delete = excluded.auto_delete,"
                " arguments = excluded.arguments RETURNING id",
                (q.vhost, q.name, int(q.auto_delete), encode_table(q.arguments)),
            ).fetchone()
            self._qids[(q.vhost, q.name)] = qid
        elif kind == _DELETE_QUEUE:
            _, vhost, name = op
            qid = self._qids.pop((vhost, name), None)
            if qid is not None:
                conn.execute("DELETE FROM entries WHERE queue = ?", (qid,))
                conn.execute("DELETE FROM queues WHERE id = ?", (qid,))
            conn.execute(
                "DELETE FROM bindings WHERE vhost = ? AND destination_kind = 'queue'"
                " AND destination = ?",
                (vhost, name),
            )
        elif kind in (_PUT_BINDING, _DELETE_BINDING):
            b: BindingRecord = op[1]
            values = (b.vhost, b.source, b.destination_kind, b.destination, b.routing_key,
                      encode_table(b.arguments))
            if kind == _PUT_BINDING:
                conn.execute(
                    "INSERT OR IGNORE INTO bindings (vhost, source, destination_kind,"
                    " destination, routing_key, arguments) VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )
            else:
                conn.execute(
                    "DELETE FROM bindings WHERE vhost = ? AND source = ? AND"
                    " destination_kind = ? AND destination = ? AND routing_key = ?"
                    " AND arguments = ?",
                    values,
                )
        elif kind == _PURGE:
            _, vhost, name, keep = op
            qid = self._qids.get((vhost, name))
            if qid is None:
                return
            if not keep:
                conn.execute("DELETE FROM entries WHERE queue = ?", (qid,))
                return
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS purge_keep (id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM temp.purge_keep")
            conn.executemany(
                "INSERT OR IGNORE INTO temp.purge_keep (id) VALUES (?)", ((i,) for i in keep)
            )
            conn.execute(
                "DELETE FROM entries WHERE queue = ? AND message NOT IN"
                " (SELECT id FROM temp.purge_keep)",
                (qid,),
            )
        else:  # pragma: no cover - every kind is handled above
            raise AssertionError(f"unknown store operation {kind!r}")


def _looks_corrupt(exc: sqlite3.OperationalError) -> bool:
    """Whether an OperationalError at start-up means a damaged file (not, say, a lock)."""
    text = str(exc).lower()
    return any(
        s in text for s in ("malformed", "not a database", "corrupt", "no such table")
    )


class _Run:
    """Message operations of a batch between two topology operations, coalesced.

    Within a run, ids are unique and a message's publish comes before its
    deliveries and removals, so writing inserts, then updates, then deletes
    gives the same result as replaying the calls in order; and an entry
    removed in the same run it was published in is never written.
    """

    __slots__ = ("entries", "expires", "messages", "qids", "removes", "updates")

    def __init__(self, qids: dict[QueueKey, int]) -> None:
        self.qids = qids
        #: message id -> [refs, exchange, routing_key, properties, body]
        self.messages: dict[int, list[Any]] = {}
        #: (queue id, message id) -> delivery count, for entries new in this run
        self.entries: dict[tuple[int, int], int] = {}
        #: (queue id, message id) -> absolute expiry time, for new entries that have one
        self.expires: dict[tuple[int, int], float] = {}
        self.updates: dict[tuple[int, int], int] = {}
        self.removes: dict[tuple[int, int], None] = {}

    def publish(self, op: Op) -> None:
        (_, message_id, vhost, queues, exchange, routing_key, properties, body, _token,
         expires) = op
        qids = self.qids
        entries = self.entries
        refs = 0
        for i, name in enumerate(queues):
            qid = qids.get((vhost, name))
            if qid is not None:
                key = (qid, message_id)
                if key not in entries:
                    entries[key] = 0
                    refs += 1
                    if expires is not None and expires[i] is not None:
                        self.expires[key] = expires[i]
        if refs:
            self.messages[message_id] = [refs, exchange, routing_key, properties, body]

    def remove(self, op: Op) -> None:
        _, vhost, name, message_id = op
        qid = self.qids.get((vhost, name))
        if qid is None:
            return
        key = (qid, message_id)
        if key in self.entries:
            del self.entries[key]
            self.expires.pop(key, None)
            record = self.messages[message_id]
            record[0] -= 1
            if not record[0]:
                del self.messages[message_id]
        else:
            self.updates.pop(key, None)
            self.removes[key] = None

    def delivered(self, op: Op) -> None:
        _, vhost, name, message_id, count = op
        qid = self.qids.get((vhost, name))
        if qid is None:
            return
        key = (qid, message_id)
        if key in self.entries:
            self.entries[key] = count
        elif key not in self.removes:
            self.updates[key] = count

    def flush(
        self,
        conn: sqlite3.Connection,
        encode: Callable[[BasicProperties], bytes | None],
    ) -> None:
        """Write what the run holds and start empty."""
        if self.messages:
            conn.executemany(INSERT_MESSAGE, _message_rows(self.messages, encode))
            self.messages = {}
        if self.entries:
            expires = self.expires
            conn.executemany(
                INSERT_ENTRY,
                [(q, m, d, expires.get((q, m))) for (q, m), d in self.entries.items()],
            )
            self.entries = {}
            self.expires = {}
        if self.updates:
            conn.executemany(
                UPDATE_ENTRY, [(d, q, m) for (q, m), d in self.updates.items()]
            )
            self.updates = {}
        if self.removes:
            conn.executemany(DELETE_ENTRY, list(self.removes))
            self.removes = {}


def _message_rows(
    messages: dict[int, list[Any]], encode: Callable[[BasicProperties], bytes | None]
) -> Iterator[tuple[Any, ...]]:
    for message_id, (refs, exchange, routing_key, properties, body) in messages.items():
        blob = encode(properties)
        yield (
            message_id,
            refs,
            message_checksum(exchange, routing_key, blob, body),
            exchange,
            routing_key,
            blob,
            body,
        )
