"""Salvage: copy what is readable out of a damaged store (``skip_corrupt=True``).

Used only when the operator asked to start past corruption.  Each table is
walked in key ranges; a range whose pages cannot be read is skipped by
probing further and further ahead (doubling steps), so one bad page costs the
rows on it, not the table.  The copy is then made consistent: entries of
missing queues or messages are dropped, reference counts recomputed,
unreferenced messages deleted.  The damaged file is kept beside the new one
as ``<file>.corrupt-N`` for a post-mortem; nothing is deleted.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from amqplike.store._schema import (
    APPLICATION_ID,
    DEFAULT_PAGE_SIZE,
    ROWID_TABLES,
    SCHEMA,
    SCHEMA_VERSION,
)

_CHUNK: Final = 256
_MAX_KEY: Final = 2**63 - 1
_MIN_KEY: Final = -(2**63)

Connect = Callable[..., sqlite3.Connection]


def _reads(probe: Callable[[int], object], key: int) -> bool:
    try:
        probe(key)
    except sqlite3.DatabaseError:
        return False
    return True


def _skip_ahead(probe: Callable[[int], object], last: int) -> int | None:
    """A key past ``last`` from which ``probe`` reads again, or None past the key space.

    Steps double until a read works, then a binary search between the last
    failing and the first working key finds (about) the smallest working one,
    so the overshoot does not cost rows: with 32 KiB pages one bad page holds
    dozens of 1 KiB messages, and doubling alone skipped up to as many again.
    """
    step = 1
    while last + step < _MAX_KEY:
        if _reads(probe, last + step):
            break
        step *= 2
    else:
        return None
    bad, good = last + step // 2, last + step
    while good - bad > 1:
        middle = (bad + good) // 2
        if _reads(probe, middle):
            good = middle
        else:
            bad = middle
    return good


def _scan_rowid(
    src: sqlite3.Connection, table: str, columns: Sequence[str], lost: list[str]
) -> Iterator[list[Any]]:
    """Yield chunks of a rowid table's rows, skipping the key ranges that cannot be read.

    After a chunk fails, rows are read one by one up to the unreadable one,
    then :func:`_skip_ahead` finds where reading works again.
    """
    cols = ", ".join(columns)
    query = f"SELECT rowid, {cols} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"

    def probe(key: int) -> object:
        return src.execute(
            f"SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (key,)
        ).fetchall()

    last = _MIN_KEY
    while True:
        try:
            rows = src.execute(query, (last, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            while True:
                try:
                    rows = src.execute(query, (last, 1)).fetchall()
                except sqlite3.DatabaseError:
                    break
                if not rows:
                    return
                yield [row[1:] for row in rows]
                last = rows[-1][0]
            resumed = _skip_ahead(probe, last)
            lost.append(f"{table}: rows after rowid {last} up to {resumed} unreadable")
            if resumed is None:
                return
            last = resumed
            continue
        if not rows:
            return
        yield [row[1:] for row in rows]
        last = rows[-1][0]


def _scan_entries(src: sqlite3.Connection, lost: list[str]) -> Iterator[list[Any]]:
    """Yield chunks of ``entries`` rows, skipping unreadable key ranges (as above)."""
    try:
        columns = {row[1] for row in src.execute("PRAGMA table_info(entries)")}
    except sqlite3.DatabaseError:
        columns = set()
    # Format 1 had no expiry column: its entries have none.
    expires = "expires" if "expires" in columns else "NULL"
    query = (
        f"SELECT queue, message, deliveries, {expires} FROM entries"
        " WHERE (queue, message) > (?, ?) ORDER BY queue, message LIMIT ?"
    )
    queue, message = _MIN_KEY, _MIN_KEY
    while True:
        try:
            rows = src.execute(query, (queue, message, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            while True:
                try:
                    rows = src.execute(query, (queue, message, 1)).fetchall()
                except sqlite3.DatabaseError:
                    break
                if not rows:
                    return
                yield rows
                queue, message = rows[0][0], rows[0][1]

            def in_queue(key: int, q: int = queue) -> object:
                return src.execute(query, (q, key, 1)).fetchall()

            def next_queue(key: int) -> object:
                return src.execute(query, (key, _MIN_KEY, 1)).fetchall()

            lost.append(f"entries: rows after ({queue}, {message}) unreadable")
            resumed = _skip_ahead(in_queue, message)
            if resumed is not None:
                message = resumed
                continue
            resumed = _skip_ahead(next_queue, queue)
            if resumed is None:
                return
            queue, message = resumed, _MIN_KEY
            continue
        if not rows:
            return
        yield rows
        queue, message = rows[-1][0], rows[-1][1]


def _aside_name(path: str) -> str:
    n = 1
    while os.path.exists(f"{path}.corrupt-{n}"):
        n += 1
    return f"{path}.corrupt-{n}"


def salvage(path: str, connect: Connect, page_size: int = DEFAULT_PAGE_SIZE) -> list[str]:
    """Rebuild ``path`` from its readable rows; return notes for the log.

    The damaged file (with its ``-wal``) is renamed ``<path>.corrupt-N``.
    ``page_size`` is the new file's (the store passes the damaged file's own).
    """
    notes: list[str] = []
    lost: list[str] = []
    new_path = path + ".salvage"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(new_path + suffix):
            os.remove(new_path + suffix)
    dst = connect(new_path, isolation_level=None)
    copied = 0
    try:
        dst.execute(f"PRAGMA page_size = {int(page_size)}")
        dst.execute("PRAGMA journal_mode = DELETE")
        dst.executescript(f"PRAGMA application_id = {APPLICATION_ID}; {SCHEMA}")
        dst.execute("BEGIN")
        try:
            src = connect(path, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            notes.append(f"nothing could be read from {path}: {exc}")
            src = None
        if src is not None:
            try:
                src.execute("PRAGMA query_only = 1")
                copied = _copy(src, dst, lost)
            except sqlite3.DatabaseError as exc:
                notes.append(f"the schema of {path} is unreadable: {exc}")
            finally:
                src.close()
        dst.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )
        dst.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', 0)")
        _make_consistent(dst, notes)
        dst.execute("COMMIT")
        dst.execute("PRAGMA journal_mode = WAL")
    finally:
        dst.close()
    aside = _aside_name(path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    os.replace(path, aside)
    os.replace(new_path, path)
    notes.extend(lost)
    notes.append(f"salvaged {copied} rows from {path}; the damaged file is kept as {aside}")
    return notes


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection, lost: list[str]) -> int:
    copied = 0
    for table, columns in ROWID_TABLES:
        marks = ", ".join("?" * len(columns))
        insert = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        for rows in _scan_rowid(src, table, columns, lost):
            dst.executemany(insert, rows)
            copied += len(rows)
    for rows in _scan_entries(src, lost):
        dst.executemany(
            "INSERT OR IGNORE INTO entries (queue, message, deliveries, expires)"
            " VALUES (?, ?, ?, ?)",
            rows,
        )
        copied += len(rows)
    return copied


def _make_consistent(dst: sqlite3.Connection, notes: list[str]) -> None:
    """Drop dangling entries, recompute references, drop unreferenced messages."""
    dst.execute("DROP TRIGGER entry_removed")
    dangling = dst.execute(
        "DELETE FROM entries WHERE queue NOT IN (SELECT id FROM queues)"
        " OR message NOT IN (SELECT id FROM messages)"
    ).rowcount
    if dangling:
        notes.append(f"{dangling} queue entries lost their message or queue and were dropped")
    orphans = dst.execute(
        "DELETE FROM messages WHERE id NOT IN (SELECT message FROM entries)"
    ).rowcount
    if orphans:
        notes.append(f"{orphans} messages no longer in any queue were dropped")
    dst.execute(
        "UPDATE messages SET refs = c.n FROM"
        " (SELECT message, count(*) AS n FROM entries GROUP BY message) AS c"
        " WHERE c.message = messages.id AND messages.refs != c.n"
    )
    trigger = SCHEMA[SCHEMA.index("CREATE TRIGGER") :]
    dst.execute(trigger.strip().rstrip(";"))
