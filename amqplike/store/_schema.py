"""The SQLite schema of the embedded store (format version 2).

One file (``amqplike.sqlite3`` in the data directory) plus SQLite's ``-wal``
and ``-shm`` files while it is open.  Every table but ``entries`` is a rowid
table, so that salvage can walk each of them by rowid ranges.

- ``meta(key, value)``: ``schema`` (format version) and ``clean`` (1 after a
  clean shut-down, 0 while running).
- ``exchanges``, ``queues``, ``bindings``: durable topology; argument tables
  are canonical CBOR, so a binding's arguments are part of its key.
- ``messages``: one row per stored message, whatever the number of queues
  holding it: ``refs`` (how many ``entries`` rows point at it), ``crc``
  (CRC-32 of what a delivery shows), exchange, routing key, properties
  (CBOR array or NULL) and body, last so that reading the small columns does
  not touch a long body's overflow pages.
- ``entries(queue, message, deliveries, expires)``: a message in a queue,
  clustered by ``(queue, message)`` (``WITHOUT ROWID``), so that start-up
  reads each queue's index in FIFO order without touching a body.
  ``expires`` is the entry's absolute expiry time (seconds since the epoch:
  the broker's clock at publish plus the message's or the queue's TTL), NULL
  without one.  Format 1 had no such column: :data:`MIGRATE_1_TO_2` adds it
  (NULL: no expiry) when such a store is opened.
- The ``entry_removed`` trigger keeps ``refs`` and deletes a message with
  its last entry, whatever removed the entry (ack, purge, queue deletion).
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 2
#: Page size of new store files.  A 64 KiB body is a chain of overflow pages, each one WAL
#: frame written and checkpointed with its own system calls: 32 KiB pages make that 3
#: pages instead of 9 (about a quarter less writer CPU per 64 KiB message, see
#: docs/durability.md), while 100 B to 1 KiB messages cost about the same.  An existing
#: file keeps its page size: a WAL database cannot change it without a VACUUM.
DEFAULT_PAGE_SIZE: Final = 32768
#: WAL size (bytes) after which a commit checkpoints it into the database file: SQLite's
#: default of 1000 pages at the 8 KiB pages of older stores, kept in bytes whatever the
#: page size.
WAL_CHECKPOINT_BYTES: Final = 1000 * 8192
#: ``journal_size_limit``: the WAL file is kept (not cut back) up to this size when it
#: restarts, so commits overwrite blocks it already has; a larger one (after a big
#: transaction) is cut back to it.  Stale frames behind the live ones are told apart
#: by their salts (``_wal.py``).
WAL_KEEP_BYTES: Final = 64 * 1024 * 1024
#: ``PRAGMA application_id``: "AMQL", so a stray SQLite file is not taken for a store.
APPLICATION_ID: Final = 0x414D514C

SCHEMA: Final = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value
);
CREATE TABLE exchanges (
    id INTEGER PRIMARY KEY,
    vhost TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    auto_delete INTEGER NOT NULL,
    internal INTEGER NOT NULL,
    arguments BLOB NOT NULL,
    UNIQUE (vhost, name)
);
CREATE TABLE queues (
    id INTEGER PRIMARY KEY,
    vhost TEXT NOT NULL,
    name TEXT NOT NULL,
    auto_delete INTEGER NOT NULL,
    arguments BLOB NOT NULL,
    UNIQUE (vhost, name)
);
CREATE TABLE bindings (
    id INTEGER PRIMARY KEY,
    vhost TEXT NOT NULL,
    source TEXT NOT NULL,
    destination_kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    arguments BLOB NOT NULL,
    UNIQUE (vhost, source, destination_kind, destination, routing_key, arguments)
);
CREATE INDEX bindings_by_destination ON bindings (vhost, destination_kind, destination);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    refs INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    properties BLOB,
    body BLOB NOT NULL
);
CREATE TABLE entries (
    queue INTEGER NOT NULL,
    message INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    expires REAL,
    PRIMARY KEY (queue, message)
) WITHOUT ROWID;
CREATE TRIGGER entry_removed AFTER DELETE ON entries BEGIN
    DELETE FROM messages WHERE id = OLD.message AND refs <= 1;
    UPDATE messages SET refs = refs - 1 WHERE id = OLD.message AND refs > 1;
END;
"""

#: Row-id tables and the columns salvage copies, in dependency order.
ROWID_TABLES: Final = (
    ("meta", ("key", "value")),
    ("exchanges", ("id", "vhost", "name", "type", "auto_delete", "internal", "arguments")),
    ("queues", ("id", "vhost", "name", "auto_delete", "arguments")),
    (
        "bindings",
        ("id", "vhost", "source", "destination_kind", "destination", "routing_key", "arguments"),
    ),
    ("messages", ("id", "refs", "crc", "exchange", "routing_key", "properties", "body")),
)

INSERT_MESSAGE: Final = (
    "INSERT INTO messages (id, refs, crc, exchange, routing_key, properties, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_ENTRY: Final = (
    "INSERT INTO entries (queue, message, deliveries, expires) VALUES (?, ?, ?, ?)"
)
#: Format 1 -> 2: entries get their absolute expiry time (NULL: none, as before).
MIGRATE_1_TO_2: Final = "ALTER TABLE entries ADD COLUMN expires REAL"
UPDATE_ENTRY: Final = "UPDATE entries SET deliveries = ? WHERE queue = ? AND message = ?"
DELETE_ENTRY: Final = "DELETE FROM entries WHERE queue = ? AND message = ?"
