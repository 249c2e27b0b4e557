"""The narrow interface between the broker and a durable store.

Threading contract (every backend keeps it):

- One *owner* thread (the reactor's) calls every method.  ``load`` and
  ``close`` block and are called at start-up and shut-down only; every other
  write method only queues the operation and returns at once: the owner never
  waits on the disk.
- Operations are applied in the order they were called.
- Results come back through a :class:`StoreListener`, whose methods the store
  calls through the ``dispatch`` function it was built with (the Twisted
  integration passes ``reactor.callFromThread``, so they run on the reactor
  thread; tests pass a function that calls at once, in the writer's thread).
  Batches are reported in commit order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from amqplike.properties import BasicProperties
from amqplike.store._records import (
    BindingRecord,
    ExchangeRecord,
    LoadedState,
    QueueRecord,
    StoredMessage,
    StoreState,
    StoreStats,
    StoreWriteError,
)


class StoreListener(Protocol):
    """Where a store reports what became durable, and what could not."""

    def batch_committed(self, tokens: Sequence[object]) -> None:
        """The operations carrying these tokens (and all before them) are on disk.

        Release the publisher confirms (``basic.ack``) they stand for.
        """

    def batch_failed(self, tokens: Sequence[object], error: StoreWriteError) -> None:
        """The publishes carrying these tokens were not written: ``basic.nack`` them.

        Nothing is reported committed that was not; a token is reported once,
        by one of the two methods.
        """

    def state_changed(self, state: StoreState, error: StoreWriteError | None) -> None:
        """The store went ``OK`` / ``BLOCKED`` (disk full) / ``FAILED`` (fatal).

        On ``BLOCKED`` block publishers (``connection.blocked``); on ``OK``
        unblock them; on ``FAILED`` log ``error`` and exit non-zero.
        """


class Store(Protocol):
    """A durable store of topology and persistent messages.

    Queues are named by ``(vhost, name)``; only durable entities and
    persistent messages in durable queues belong here: the integration
    filters, the store stores what it is told.  A message routed to several
    queues is stored once and referenced per queue; it is deleted when its
    last reference goes.
    """

    @property
    def state(self) -> StoreState:
        """The writer's current state (the listener is told of every change)."""
        ...

    @property
    def stats(self) -> StoreStats:
        """Counters: commits, operations written, failed batches, largest batch."""
        ...

    @property
    def writing(self) -> bool:
        """Whether operations wait to be written or are being written now.

        A hint for the owner thread (it may be stale by the time it is read):
        the server does not busy-poll while the writer has work, since a
        spinning reactor thread would hold the GIL the writer needs.
        """
        ...

    def load(self) -> LoadedState:
        """Open the store, check it, and return what it holds (blocking).

        Called once, before listeners accept connections.  Raises
        :class:`~amqplike.store.StoreCorruptError` for damage other than a
        torn tail (unless the store was built to skip it) and
        :class:`~amqplike.store.StoreLockedError` if another process has it.
        """
        ...

    def put_exchange(self, record: ExchangeRecord) -> None:
        """Record a durable exchange (insert or replace)."""
        ...

    def delete_exchange(self, vhost: str, name: str) -> None:
        """Forget an exchange and every binding from or to it."""
        ...

    def put_queue(self, record: QueueRecord) -> None:
        """Record a durable queue (insert, or replace its flags keeping its messages)."""
        ...

    def delete_queue(self, vhost: str, name: str) -> None:
        """Forget a queue, its bindings and its messages."""
        ...

    def put_binding(self, record: BindingRecord) -> None:
        """Record a binding (a no-op if the same binding is stored)."""
        ...

    def delete_binding(self, record: BindingRecord) -> None:
        """Forget a binding (a no-op if it is not stored)."""
        ...

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
        """Queue the publish of one message to durable ``queues``; return its id.

        ``expires`` is None (no entry expires) or holds, for each of
        ``queues``, the absolute expiry time of the message's entry there
        (seconds since the epoch) or None; it comes back in
        :attr:`QueueIndex.expires`.

        Ids grow with every call, so within a queue ascending id is FIFO
        order.  ``token`` (if not None) comes back through
        :meth:`StoreListener.batch_committed` once the message is on disk, or
        through :meth:`StoreListener.batch_failed`.  Queues the store does
        not know are skipped.
        """
        ...

    def remove(self, vhost: str, queue: str, message_id: int) -> None:
        """Queue the removal of a message from a queue (acked, auto-acked or dropped)."""
        ...

    def record_delivery(self, vhost: str, queue: str, message_id: int, delivery_count: int) -> None:
        """Queue the new delivery count of a message in a queue (call on each delivery).

        A message recovered with a count above zero comes back with
        ``redelivered=True``.
        """
        ...

    def purge_queue(self, vhost: str, queue: str, keep: Collection[int] = ()) -> None:
        """Queue the removal of a queue's messages except the ``keep`` ids (its unacked)."""
        ...

    def barrier(self, token: object) -> None:
        """Report ``token`` committed once every operation queued before it is."""
        ...

    def read_messages(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        """Read messages back (blocking, a few milliseconds per thousand).

        Only committed messages can be read: call it for recovered messages,
        or for ones whose publish was reported committed.  An id missing from
        the result is not stored (or, in skip mode, was unreadable).
        """
        ...

    def close(self) -> None:
        """Commit everything queued, mark a clean shut-down, stop the writer (blocking).

        Idempotent.  Operations after close raise ``StoreClosedError``.
        """
        ...
