"""Store fault injection for tests of the real process (``AMQPLIKE_STORE_FAULTS``).

Only ``amqplike/tap.py`` reads the variable.  Its value is a comma-separated
list of ``KIND:PATH``: while the file ``PATH`` exists, every ``COMMIT`` of
the store fails with the error of ``KIND``:

- ``enospc``: "database or disk is full" (the store blocks and retries);
- ``eio``: "disk I/O error" (fatal: the broker exits non-zero).

So a test starts the broker normally, creates the file when it wants the
disk to fail, and removes it to give the space back.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, Final

#: The environment variable tap.py reads.
FAULTS_VARIABLE: Final = "AMQPLIKE_STORE_FAULTS"

_ERRORS: Final = {
    "enospc": "database or disk is full",
    "eio": "disk I/O error",
}


def parse_faults(spec: str) -> list[tuple[str, str]]:
    """``[(error text, flag path), ...]`` from the variable's value; ``ValueError`` if malformed."""
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, sep, path = item.partition(":")
        if not sep or kind not in _ERRORS or not path:
            raise ValueError(f"{FAULTS_VARIABLE}: expected enospc:PATH or eio:PATH, got {item!r}")
        faults.append((_ERRORS[kind], path))
    return faults


def faulty_connect(spec: str) -> Callable[..., sqlite3.Connection]:
    """A ``connect`` for :class:`~amqplike.store.SQLiteStore` whose commits fail on demand."""
    faults = parse_faults(spec)

    class _FaultyConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "COMMIT":
                for text, path in faults:
                    if os.path.exists(path):
                        raise sqlite3.OperationalError(text)
            return super().execute(sql, *args)

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return sqlite3.connect(*args, factory=_FaultyConnection, **kwargs)

    return connect
