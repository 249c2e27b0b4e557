"""Durable storage: the :class:`Store` interface and its embedded SQLite default.

The store imports neither the core nor Twisted's reactor: it has its own
record types, and reports back through a :class:`StoreListener` called via an
injected ``dispatch`` function (``reactor.callFromThread`` in the broker).
See ``docs/durability.md`` for the format, the group commit, what a confirm
means and the failure modes.
"""

from __future__ import annotations

from amqplike.store._interface import Store, StoreListener
from amqplike.store._memory import MemoryStore
from amqplike.store._records import (
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
from amqplike.store._sqlite import DEFAULT_FILE_NAME, SQLiteStore, call_now

__all__ = [
    "DEFAULT_FILE_NAME",
    "BindingRecord",
    "ExchangeRecord",
    "LoadedState",
    "MemoryStore",
    "QueueIndex",
    "QueueKey",
    "QueueRecord",
    "SQLiteStore",
    "Store",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreListener",
    "StoreLockedError",
    "StoreState",
    "StoreStats",
    "StoreWriteError",
    "StoredMessage",
    "call_now",
]
