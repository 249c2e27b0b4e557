"""An in-memory :class:`~amqplike.store.Store`, for tests of the layers above.

It keeps the contract of the SQLite store (the same contract suite runs
against both) without a thread or a file: the "disk" is a
:class:`MemoryDisk` that outlives the store, so a test can simulate a
restart by building a new store on the same disk, and a crash by doing so
without committing.  Operations queue until :meth:`MemoryStore.commit`
(or at once with ``autocommit=True``); a commit is one batch.  Faults are
injected with :meth:`MemoryStore.fail_next_commits`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Collection, Sequence
from typing import Any

from attrs import define, field

from amqplike.properties import BasicProperties
from amqplike.store._codec import encode_table
from amqplike.store._interface import StoreListener
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
    StoredMessage,
    StoreState,
    StoreStats,
    StoreWriteError,
)

_BindingKey = tuple[str, str, str, str, str, bytes]


def _binding_key(b: BindingRecord) -> _BindingKey:
    return (b.vhost, b.source, b.destination_kind, b.destination, b.routing_key,
            encode_table(b.arguments))


@define(eq=False)
class MemoryDisk:
    """What a :class:`MemoryStore` has committed; survives the store."""

    exchanges: dict[QueueKey, ExchangeRecord] = field(factory=dict)
    queues: dict[QueueKey, QueueRecord] = field(factory=dict)
    bindings: dict[_BindingKey, BindingRecord] = field(factory=dict)
    #: message id -> [references, message]
    messages: dict[int, list[Any]] = field(factory=dict)
    #: queue -> {message id: delivery count}, in id order
    entries: dict[QueueKey, dict[int, int]] = field(factory=dict)
    #: queue -> {message id: absolute expiry time}, for entries that have one
    expires: dict[QueueKey, dict[int, float]] = field(factory=dict)
    clean: bool = True
    #: True while a store has it open (a second open is refused, as a lock file would).
    in_use: bool = False


class MemoryStore:
    """A store over a :class:`MemoryDisk`; see the module docstring."""

    def __init__(
        self,
        disk: MemoryDisk,
        listener: StoreListener,
        dispatch: Callable[..., object] | None = None,
        *,
        autocommit: bool = False,
    ) -> None:
        self.disk = disk
        self._listener = listener
        self._dispatch = dispatch or (lambda f, *args: f(*args))
        self._autocommit = autocommit
        self._pending: list[tuple[Any, ...]] = []
        self._next_id = 1
        self._open = False
        self._closed = False
        self._state = StoreState.OK
        self._faults: list[StoreWriteError] = []
        self._fault: StoreWriteError | None = None
        self._commits = 0
        self._operations = 0
        self._failed_batches = 0
        self._largest_batch = 0

    @property
    def state(self) -> StoreState:
        """OK, BLOCKED (after an injected disk-full fault) or FAILED."""
        return self._state

    @property
    def stats(self) -> StoreStats:
        """Counters since :meth:`load`."""
        return StoreStats(
            self._commits, self._operations, self._failed_batches, self._largest_batch
        )

    @property
    def writing(self) -> bool:
        """Whether operations are queued for the next :meth:`commit`."""
        return bool(self._pending)

    def fail_next_commits(self, error: StoreWriteError, times: int = 1) -> None:
        """Make the next ``times`` commits fail with ``error`` (a test hook)."""
        self._faults.extend([error] * times)

    def load(self) -> LoadedState:
        """Return what the disk holds and mark it in use."""
        if self._open or self._closed:
            raise StoreClosedError("load() is called once, on a new store")
        if self.disk.in_use:
            raise StoreClosedError("the memory disk is in use by another store")
        disk = self.disk
        disk.in_use = True
        self._open = True
        messages = {}
        count = 0
        for key in disk.queues:
            entries = disk.entries.get(key, {})
            ids = sorted(entries)
            expires = {i: e for i, e in disk.expires.get(key, {}).items() if i in entries}
            messages[key] = QueueIndex(
                array(MESSAGE_ID_TYPECODE, ids),
                array(DELIVERY_COUNT_TYPECODE, (entries[i] for i in ids)),
                array(EXPIRY_TYPECODE, (expires.get(i, NO_EXPIRY) for i in ids))
                if expires
                else None,
            )
            count += len(ids)
        self._next_id = max(disk.messages, default=0) + 1
        clean, disk.clean = disk.clean, False
        return LoadedState(
            tuple(disk.exchanges.values()),
            tuple(disk.queues.values()),
            tuple(disk.bindings.values()),
            messages,
            count,
            clean,
        )

    def _queue(self, *op: Any) -> None:
        if not self._open:
            raise StoreClosedError("store is closed" if self._closed else "store is not loaded")
        self._pending.append(op)
        if self._autocommit:
            self.commit()

    def put_exchange(self, record: ExchangeRecord) -> None:
        """Queue: record a durable exchange."""
        self._queue("put_exchange", record)

    def delete_exchange(self, vhost: str, name: str) -> None:
        """Queue: forget an exchange and its bindings."""
        self._queue("delete_exchange", vhost, name)

    def put_queue(self, record: QueueRecord) -> None:
        """Queue: record a durable queue."""
        self._queue("put_queue", record)

    def delete_queue(self, vhost: str, name: str) -> None:
        """Queue: forget a queue, its bindings and messages."""
        self._queue("delete_queue", vhost, name)

    def put_binding(self, record: BindingRecord) -> None:
        """Queue: record a binding."""
        self._queue("put_binding", record)

    def delete_binding(self, record: BindingRecord) -> None:
        """Queue: forget a binding."""
        self._queue("delete_binding", record)

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
        """Queue a publish (``expires``: each queue's entry's expiry time); return its id."""
        message_id = self._next_id
        self._next_id += 1
        self._queue(
            "append", vhost, tuple(queues),
            StoredMessage(message_id, exchange, routing_key, properties, body),
            None if expires is None else tuple(expires), token,
        )
        return message_id

    def remove(self, vhost: str, queue: str, message_id: int) -> None:
        """Queue: a message left a queue."""
        self._queue("remove", vhost, queue, message_id)

    def record_delivery(
        self, vhost: str, queue: str, message_id: int, delivery_count: int
    ) -> None:
        """Queue: a message was delivered ``delivery_count`` times."""
        self._queue("delivered", vhost, queue, message_id, delivery_count)

    def purge_queue(self, vhost: str, queue: str, keep: Collection[int] = ()) -> None:
        """Queue: drop a queue's messages but ``keep``."""
        self._queue("purge", vhost, queue, frozenset(keep))

    def barrier(self, token: object) -> None:
        """Queue: report ``token`` with the batch that commits it."""
        self._queue("barrier", token)

    def read_messages(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        """Read committed messages by id."""
        if not self._open:
            raise StoreClosedError("store is not open")
        messages = self.disk.messages
        return {i: messages[i][1] for i in message_ids if i in messages}

    def commit(self) -> None:
        """Apply every queued operation as one batch and report it (the writer's job)."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        tokens = [op[-1] for op in batch if op[0] in ("append", "barrier") and op[-1] is not None]
        if self._state is StoreState.FAILED:
            assert self._fault is not None
            self._dispatch(self._listener.batch_failed, tokens, self._fault)
            return
        if self._faults:
            error = self._fault = self._faults.pop(0)
            self._failed_batches += 1
            if tokens:
                self._dispatch(self._listener.batch_failed, tokens, error)
            if error.disk_full:
                self._pending = [
                    op for op in batch if op[0] not in ("append", "barrier")
                ] + self._pending
                self._set_state(StoreState.BLOCKED, error)
            else:
                self._set_state(StoreState.FAILED, error)
            return
        for op in batch:
            getattr(self, "_apply_" + op[0])(*op[1:])
        self._commits += 1
        self._operations += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
        if self._state is StoreState.BLOCKED:
            self._set_state(StoreState.OK, None)
        if tokens:
            self._dispatch(self._listener.batch_committed, tokens)

    def _set_state(self, state: StoreState, error: StoreWriteError | None) -> None:
        if state is not self._state:
            self._state = state
            self._dispatch(self._listener.state_changed, state, error)

    def close(self) -> None:
        """Commit what is queued and mark a clean shut-down."""
        if self._closed:
            return
        if self._open:
            self.commit()
            if self._state is not StoreState.FAILED and not self._pending:
                self.disk.clean = True
            self.disk.in_use = False
        self._open = False
        self._closed = True

    def crash(self) -> None:
        """Drop what is queued, as a killed process would, and let go of the disk."""
        self._pending = []
        self.disk.in_use = False
        self._open = False
        self._closed = True

    # -- applying committed operations to the disk --------------------------------

    def _apply_put_exchange(self, record: ExchangeRecord) -> None:
        self.disk.exchanges[(record.vhost, record.name)] = record

    def _apply_delete_exchange(self, vhost: str, name: str) -> None:
        disk = self.disk
        disk.exchanges.pop((vhost, name), None)
        for key, b in list(disk.bindings.items()):
            if b.vhost == vhost and (
                b.source == name or (b.destination_kind == "exchange" and b.destination == name)
            ):
                del disk.bindings[key]

    def _apply_put_queue(self, record: QueueRecord) -> None:
        key = (record.vhost, record.name)
        self.disk.queues[key] = record
        self.disk.entries.setdefault(key, {})

    def _apply_delete_queue(self, vhost: str, name: str) -> None:
        disk = self.disk
        key = (vhost, name)
        disk.queues.pop(key, None)
        disk.expires.pop(key, None)
        for message_id in disk.entries.pop(key, {}):
            self._unref(message_id)
        for bkey, b in list(disk.bindings.items()):
            if b.vhost == vhost and b.destination_kind == "queue" and b.destination == name:
                del disk.bindings[bkey]

    def _apply_put_binding(self, record: BindingRecord) -> None:
        self.disk.bindings.setdefault(_binding_key(record), record)

    def _apply_delete_binding(self, record: BindingRecord) -> None:
        self.disk.bindings.pop(_binding_key(record), None)

    def _apply_append(
        self,
        vhost: str,
        queues: tuple[str, ...],
        message: StoredMessage,
        expires: tuple[float | None, ...] | None,
        _token: object,
    ) -> None:
        disk = self.disk
        targets = {q for q in queues if (vhost, q) in disk.queues}
        if not targets:
            return
        disk.messages[message.message_id] = [len(targets), message]
        for q in targets:
            disk.entries[(vhost, q)][message.message_id] = 0
        if expires is not None:
            for q, expiry in zip(queues, expires):
                if expiry is not None and q in targets:
                    disk.expires.setdefault((vhost, q), {})[message.message_id] = expiry

    def _apply_remove(self, vhost: str, queue: str, message_id: int) -> None:
        entries = self.disk.entries.get((vhost, queue))
        if entries is not None and entries.pop(message_id, None) is not None:
            self.disk.expires.get((vhost, queue), {}).pop(message_id, None)
            self._unref(message_id)

    def _apply_delivered(self, vhost: str, queue: str, message_id: int, count: int) -> None:
        entries = self.disk.entries.get((vhost, queue))
        if entries is not None and message_id in entries:
            entries[message_id] = count

    def _apply_purge(self, vhost: str, queue: str, keep: frozenset[int]) -> None:
        entries = self.disk.entries.get((vhost, queue))
        if entries is None:
            return
        for message_id in [i for i in entries if i not in keep]:
            del entries[message_id]
            self._unref(message_id)

    def _apply_barrier(self, _token: object) -> None:
        pass

    def _unref(self, message_id: int) -> None:
        record = self.disk.messages[message_id]
        record[0] -= 1
        if not record[0]:
            del self.disk.messages[message_id]
