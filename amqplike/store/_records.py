"""The values the store takes and gives back, and its errors.

The store has its own small record types rather than the core's objects, so
that it imports nothing of the core and a second backend (PostgreSQL for a
clustered mode) can share them.  The integration maps core objects to these
records on the way in and back on recovery.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from attrs import field, frozen

from amqplike.properties import BasicProperties

#: Typecode of the per-queue message id arrays (signed 64-bit).
MESSAGE_ID_TYPECODE = "q"
#: Typecode of the per-queue delivery count arrays (unsigned 32-bit).
DELIVERY_COUNT_TYPECODE = "L"
#: Typecode of the per-queue expiry arrays (double: seconds since the epoch).
EXPIRY_TYPECODE = "d"
#: The value of an expiry array's slot for a message without a deadline (NaN).
NO_EXPIRY = float("nan")

DestinationKind = Literal["queue", "exchange"]


def _no_arguments() -> Mapping[str, Any]:
    return {}


@frozen(slots=True)
class ExchangeRecord:
    """A durable exchange of one virtual host (``durable`` is implied)."""

    vhost: str
    name: str
    type: str
    auto_delete: bool = False
    internal: bool = False
    arguments: Mapping[str, Any] = field(factory=_no_arguments)


@frozen(slots=True)
class QueueRecord:
    """A durable queue of one virtual host (exclusive queues are never stored)."""

    vhost: str
    name: str
    auto_delete: bool = False
    arguments: Mapping[str, Any] = field(factory=_no_arguments)


@frozen(slots=True)
class BindingRecord:
    """A binding from ``source`` to a queue or (exchange-to-exchange) an exchange.

    Two records name the same binding when every field is equal, arguments
    included (AMQP 0-9-1, 1.7.2.3); ``arguments`` is the binding's argument
    table as declared (a plain mapping, not the core's frozen form).
    """

    vhost: str
    source: str
    destination: str
    destination_kind: DestinationKind
    routing_key: str = ""
    arguments: Mapping[str, Any] = field(factory=_no_arguments)


@frozen(slots=True)
class StoredMessage:
    """A message read back from the store: what ``basic.deliver`` needs."""

    message_id: int
    exchange: str
    routing_key: str
    properties: BasicProperties
    body: bytes


class QueueIndex:
    """The recovered messages of one queue, oldest first, in two compact arrays.

    ``message_ids[i]`` is a message id and ``delivery_counts[i]`` how many
    times it was delivered before (``> 0`` means ``redelivered=True``).  Ids
    grow with publish order, so ascending id is the queue's FIFO order,
    requeued messages included.  About 12 bytes per message instead of a
    Python object per message.

    ``expires`` is None when no message of the queue has a deadline; else
    ``expires[i]`` is message ``i``'s absolute expiry time (seconds since the
    epoch, the broker's clock at publish plus its TTL), :data:`NO_EXPIRY`
    (NaN) for a message without one.
    """

    __slots__ = ("delivery_counts", "expires", "message_ids")

    def __init__(
        self,
        message_ids: array[int],
        delivery_counts: array[int],
        expires: array[float] | None = None,
    ) -> None:
        self.message_ids = message_ids
        self.delivery_counts = delivery_counts
        self.expires = expires

    def expiry(self, i: int) -> float | None:
        """Message ``i``'s absolute expiry time, None without one."""
        expires = self.expires
        if expires is None:
            return None
        value = expires[i]
        return None if value != value else value

    @classmethod
    def empty(cls) -> QueueIndex:
        """An index with no messages."""
        return cls(array(MESSAGE_ID_TYPECODE), array(DELIVERY_COUNT_TYPECODE))

    def __len__(self) -> int:
        return len(self.message_ids)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Yield ``(message_id, delivery_count)`` pairs, oldest first."""
        return zip(self.message_ids, self.delivery_counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QueueIndex):
            return NotImplemented
        return (
            self.message_ids == other.message_ids
            and self.delivery_counts == other.delivery_counts
            and [self.expiry(i) for i in range(len(self))]
            == [other.expiry(i) for i in range(len(other))]
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<QueueIndex {len(self)} messages>"


QueueKey = tuple[str, str]
"""A queue's identity in the store: ``(vhost, name)``."""


@frozen(slots=True)
class LoadedState:
    """Everything :meth:`Store.load` recovered, to rebuild the core from.

    ``queues`` maps each durable queue's ``(vhost, name)`` to its
    :class:`QueueIndex` (every stored queue has an entry, empty or not);
    ``message_count`` is the number of (queue, message) entries.
    Bodies are not loaded: read them with :meth:`Store.read_messages`.
    ``clean_shutdown`` is False when the previous run did not reach
    :meth:`Store.close` (a crash); ``warnings`` are one-line texts for the
    integration to log (for example a torn WAL tail that was discarded).
    """

    exchanges: tuple[ExchangeRecord, ...]
    queues: tuple[QueueRecord, ...]
    bindings: tuple[BindingRecord, ...]
    messages: Mapping[QueueKey, QueueIndex]
    message_count: int
    clean_shutdown: bool
    warnings: tuple[str, ...] = ()


class StoreState(enum.Enum):
    """Whether the store is writing.

    ``OK``: batches commit.  ``BLOCKED``: the disk is full; the batch that hit
    it was failed, later ones are retried until a write succeeds, then the
    state goes back to ``OK``.  ``FAILED``: an I/O error or a bug; nothing
    will be written again and the process should exit non-zero.
    """

    OK = "ok"
    BLOCKED = "blocked"
    FAILED = "failed"


@frozen(slots=True)
class StoreStats:
    """Counters since the store was loaded, for tests and metrics."""

    commits: int
    operations: int
    failed_batches: int
    largest_batch: int


class StoreError(Exception):
    """Base of the store's errors."""


class StoreClosedError(StoreError):
    """An operation on a store not loaded yet or already closed."""


class StoreLockedError(StoreError):
    """Another process holds the store (two brokers on one data directory)."""


class StoreCorruptError(StoreError):
    """The store's files are damaged somewhere other than a torn tail.

    ``path`` names the file, ``pages`` the database pages reported damaged
    (1-based, as SQLite numbers them) and ``offsets`` their byte offsets in
    the file; ``message_id`` is set when one message's checksum failed.
    """

    def __init__(
        self,
        path: str,
        detail: str,
        *,
        pages: tuple[int, ...] = (),
        offsets: tuple[int, ...] = (),
        message_id: int | None = None,
    ) -> None:
        where = ""
        if pages:
            shown = ", ".join(f"page {p} at byte {o}" for p, o in zip(pages[:5], offsets[:5]))
            more = f" and {len(pages) - 5} more" if len(pages) > 5 else ""
            where = f" ({shown}{more})"
        elif message_id is not None:
            where = f" (message {message_id})"
        super().__init__(f"corrupt store {path}{where}: {detail}")
        self.path = path
        self.detail = detail
        self.pages = pages
        self.offsets = offsets
        self.message_id = message_id


class StoreWriteError(StoreError):
    """A batch could not be committed.

    ``disk_full`` is True for ENOSPC/SQLITE_FULL (the store blocks and
    retries); otherwise the error is fatal (EIO, a failed fsync, a bug) and
    the store goes to :attr:`StoreState.FAILED`.  ``cause`` is the original
    exception.
    """

    def __init__(self, message: str, *, disk_full: bool, cause: BaseException | None) -> None:
        super().__init__(message)
        self.disk_full = disk_full
        self.cause = cause

    @property
    def fatal(self) -> bool:
        """True when the process should stop: nothing will be written again."""
        return not self.disk_full
