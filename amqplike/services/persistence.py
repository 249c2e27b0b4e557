"""The durable store in the running broker: recovery at start-up, writes, alarms.

:class:`StoreAdapter` joins the core and the store: it implements the core's
:class:`~amqplike.core.Persistence` port by mapping each call onto the
:class:`~amqplike.store.Store` API, and it is the store's
:class:`~amqplike.store.StoreListener`, turning committed and failed batches
into publisher confirms (:func:`~amqplike.core.settle_stored`) and the
store's state into ``connection.blocked``/``unblocked`` or a fatal stop.

:class:`PersistenceService` owns the store's life: it opens and loads it
synchronously in ``privilegedStartService`` (twistd binds the listening ports
in the listeners' ``privilegedStartService``, which runs after ours since
this service is added first), rebuilds the core from what was recovered,
watches the free disk space on a timer, and closes the store on stop (after
the listeners, which stop first).

Threading: the store calls the listener through ``reactor.callFromThread``,
so every method here runs on the reactor thread.

Delayed messages (``x-delayed-message``) of durable exchanges are stored as
entries of a store-only queue per virtual host, :data:`DELAYED_QUEUE` (a
name clients cannot declare), each carrying its due time in the
:data:`DUE_HEADER` header, which is removed again when it is recovered.
"""

from __future__ import annotations

import shutil
import time
from array import array
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final, Protocol

from attrs import evolve
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from amqplike.core import Binding, Broker, Exchange, Message, Queue, settle_stored
from amqplike.errors import ChannelError
from amqplike.store import (
    BindingRecord,
    ExchangeRecord,
    LoadedState,
    QueueIndex,
    QueueRecord,
    Store,
    StoreCorruptError,
    StoreError,
    StoreListener,
    StoreState,
    StoreWriteError,
)
from amqplike.store._records import DELIVERY_COUNT_TYPECODE

#: Exit status after a fatal store error (EX_IOERR): nothing can be written any more.
EXIT_STORE_FAILED: Final = 74
#: Exit status when the store cannot be used at start-up (EX_DATAERR): corrupt, locked, foreign.
EXIT_STORE_UNUSABLE: Final = 65

#: The store-only queue holding each virtual host's stored delayed messages.
DELAYED_QUEUE: Final = "amq.amqplike.delayed"
#: The header carrying a stored delayed message's due time (seconds on the broker's clock).
DUE_HEADER: Final = "x-amqplike-due"

#: Messages read back from the store at once at start-up (delayed messages, policy queues).
_READ_BATCH: Final = 1000

#: Blocking reasons (the ``connection.blocked`` text sent to clients).
DISK_FULL: Final = "low on disk space: the store's disk is full"
DISK_FREE_LIMIT: Final = "low on disk space"
STORE_CLOSED: Final = "the broker is shutting down"

#: How often the free disk space is checked, in seconds.
DISK_CHECK_SECONDS: Final = 1.0
#: How often committed messages deep in durable queues are paged out, in seconds.
PAGE_OUT_SECONDS: Final = 1.0
#: RabbitMQ's default ``disk_free_limit``: 50 MB.
DEFAULT_DISK_FREE_LIMIT_BYTES: Final = 50_000_000

#: Publisher flow control: reading from publishing connections stops while the
#: store's backlog (appended, not yet committed) weighs more than this ...
DEFAULT_FLOW_HIGH_BYTES: Final = 64 * 1024 * 1024
#: ... and resumes once it weighs less than this.
DEFAULT_FLOW_LOW_BYTES: Final = 32 * 1024 * 1024
#: What a queued publish weighs beyond its body: the operation tuple, its
#: properties and the core's entry (measured: 1 KiB bodies took about 1.7 KiB each).
FLOW_OVERHEAD_BYTES: Final = 512


class Notifier(Protocol):
    """What the adapter needs of the server (``BrokerFactory``): alarms and output batches."""

    batch_depth: int

    def set_blocked(self, reason: str | None) -> None:
        """Block publishers with ``reason`` (``connection.blocked``), or unblock them (None)."""

    def flush_if_idle(self) -> None:
        """Write pending output unless a batch is still running; never raises."""

    def set_flow_paused(self, paused: bool) -> None:
        """Stop (True) or resume (False) reading from connections that publish."""


class _FlowMark:
    """A barrier token: the backlog up to ``appended`` bytes was written (or failed)."""

    __slots__ = ("appended",)

    def __init__(self, appended: int) -> None:
        self.appended = appended


class _Committed:
    """A barrier token: every message id up to ``message_id`` was written, or failed."""

    __slots__ = ("message_id",)

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id


def _binding_record(vhost: str, binding: Binding) -> BindingRecord:
    return BindingRecord(
        vhost,
        binding.source,
        binding.destination,
        binding.destination_kind,
        binding.routing_key,
        dict(binding.declared or {}),
    )


class StoreAdapter:
    """The core's :class:`~amqplike.core.Persistence` over a store, and the store's listener.

    ``notifier`` (the server factory) hears of blocking changes and writes
    the confirms a batch released; ``on_fatal`` is called with an exit
    status when the store failed for good.  Build the store with this
    object as its listener, then :meth:`attach` it.

    Publisher flow control: the adapter weighs what it appends (body plus
    :data:`FLOW_OVERHEAD_BYTES`) and queues a barrier (a :class:`_FlowMark`)
    every ``(flow_high_bytes - flow_low_bytes) / 2`` bytes; when one comes
    back committed, the weight up to it left the backlog.  Above
    ``flow_high_bytes`` it tells the notifier to stop reading from
    publishers, below ``flow_low_bytes`` to resume.  The cost per publish is
    an addition and a comparison; no timer, no polling.  0 disables it.
    """

    log = Logger()
    enabled: Final = True

    def __init__(
        self,
        notifier: Notifier | None = None,
        on_fatal: Callable[[int], object] | None = None,
        *,
        skip_corrupt: bool = False,
        flow_high_bytes: int = DEFAULT_FLOW_HIGH_BYTES,
        flow_low_bytes: int = DEFAULT_FLOW_LOW_BYTES,
    ) -> None:
        if flow_high_bytes and not 0 <= flow_low_bytes < flow_high_bytes:
            raise ValueError("flow_low_bytes must be at least 0 and below flow_high_bytes")
        self._notifier = notifier
        self._on_fatal = on_fatal
        self._skip_corrupt = skip_corrupt
        self.store: Store | None = None
        self._open = False
        self._failed = False
        #: Why publishers are blocked now (a store alarm, the disk-free limit), in order.
        self._blocked: dict[str, None] = {}
        self._delayed_queues: set[str] = set()
        #: The last message id appended, and the largest id known to be committed:
        #: ids up to it can be read back, so their bodies may leave memory.
        self._last_id = 0
        self.committed = 0
        self._mark: _Committed | None = None
        #: Id ranges ``(low, high]`` that may have been in a failed batch: never paged out.
        self._unsafe: list[tuple[int, int]] = []
        self._flow_high = flow_high_bytes
        self._flow_low = flow_low_bytes
        self._flow_step = max(1, (flow_high_bytes - flow_low_bytes) // 2)
        #: Weight appended so far, and up to which the store wrote it (or failed to).
        self.appended_bytes = 0
        self.written_bytes = 0
        #: ``appended_bytes`` at which the next flow mark is queued (never, if disabled).
        self._next_flow_mark: float = self._flow_step if flow_high_bytes else float("inf")
        self._flow_marks: deque[_FlowMark] = deque()
        #: Reading from publishers is paused now.
        self.flow_paused = False

    def attach(self, store: Store) -> None:
        """Use ``store`` (built with this adapter as its listener) once it is loaded."""
        self.store = store
        self._open = True

    def writing(self) -> bool:
        """Whether the store has operations queued or being written (a hint)."""
        store = self.store
        return self._open and store is not None and store.writing

    def close(self) -> None:
        """Close the store (blocking: commits what is queued, marks a clean shut-down).

        Later calls from the core are ignored and publishes that need the
        store are refused; idempotent.
        """
        store, self._open = self.store, False
        if store is not None:
            store.close()
        self._flow_marks.clear()
        self.written_bytes = self.appended_bytes
        self._set_flow(False)

    # -- state ----------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """False while publishes that need the store are refused (blocked, failed, closed)."""
        return self._open and not self._blocked and not self._failed

    @property
    def accepting_writes(self) -> bool:
        """True while the store is open and has not failed (it may be blocked)."""
        return self._open and not self._failed

    @property
    def blocked_reason(self) -> str | None:
        """Why publishers are blocked now, None when they are not."""
        return next(iter(self._blocked), None)

    def set_blocked(self, reason: str, blocked: bool) -> None:
        """Add or clear one reason to block publishers; the server hears of the change."""
        before = self.blocked_reason
        if blocked:
            self._blocked[reason] = None
        else:
            self._blocked.pop(reason, None)
        after = self.blocked_reason
        if after != before and self._notifier is not None:
            self._notifier.set_blocked(after)

    @property
    def backlog_bytes(self) -> int:
        """The weight appended and not yet known written (at flow-mark granularity)."""
        return self.appended_bytes - self.written_bytes

    def _flow_mark(self, store: Store) -> None:
        """Queue a flow mark; pause publishers if the backlog is above the high watermark."""
        appended = self.appended_bytes
        self._next_flow_mark = appended + self._flow_step
        mark = _FlowMark(appended)
        self._flow_marks.append(mark)
        store.barrier(mark)
        if not self.flow_paused and appended - self.written_bytes > self._flow_high:
            self._set_flow(True)

    def _flow_written(self, tokens: Sequence[object]) -> None:
        """Move ``written_bytes`` past the flow marks in ``tokens``; resume below the low mark."""
        marks = self._flow_marks
        # Batches come in commit order, so marks do too: look for the oldest only.
        while marks and marks[0] in tokens:
            self.written_bytes = marks.popleft().appended
        if self.flow_paused and self.appended_bytes - self.written_bytes < self._flow_low:
            self._set_flow(False)

    def _set_flow(self, paused: bool) -> None:
        if paused == self.flow_paused:
            return
        self.flow_paused = paused
        if self._notifier is not None:
            self._notifier.set_flow_paused(paused)

    # -- Persistence: topology -------------------------------------------------------

    def exchange_declared(self, vhost: str, exchange: Exchange) -> None:
        """Store a durable exchange."""
        if self._open:
            assert self.store is not None
            self.store.put_exchange(
                ExchangeRecord(
                    vhost,
                    exchange.name,
                    exchange.type,
                    exchange.auto_delete,
                    exchange.internal,
                    dict(exchange.arguments),
                )
            )

    def exchange_deleted(self, vhost: str, exchange: Exchange) -> None:
        """Forget a durable exchange and its bindings."""
        if self._open:
            assert self.store is not None
            self.store.delete_exchange(vhost, exchange.name)

    def queue_declared(self, queue: Queue) -> None:
        """Store a durable queue."""
        if self._open:
            assert self.store is not None
            self.store.put_queue(
                QueueRecord(queue.vhost, queue.name, queue.auto_delete, dict(queue.arguments))
            )

    def queue_deleted(self, queue: Queue) -> None:
        """Forget a queue, its bindings and messages."""
        if self._open:
            assert self.store is not None
            self.store.delete_queue(queue.vhost, queue.name)

    def queue_purged(self, queue: Queue, keep: Collection[int]) -> None:
        """Drop a queue's stored messages but its unacked ones."""
        if self._open:
            assert self.store is not None
            self.store.purge_queue(queue.vhost, queue.name, keep)

    def binding_added(self, vhost: str, binding: Binding) -> None:
        """Store a binding between durable ends."""
        if self._open:
            assert self.store is not None
            self.store.put_binding(_binding_record(vhost, binding))

    def binding_removed(self, vhost: str, binding: Binding) -> None:
        """Forget a binding."""
        if self._open:
            assert self.store is not None
            self.store.delete_binding(_binding_record(vhost, binding))

    # -- Persistence: messages -------------------------------------------------------

    def append(
        self,
        vhost: str,
        queues: Sequence[str],
        message: Message,
        token: object,
        expires: Sequence[float | None] | None = None,
    ) -> int:
        """Queue the write of a persistent message; its token comes back with the batch."""
        store = self.store
        if not self._open or store is None:
            return 0
        self._last_id = message_id = store.append(
            vhost,
            queues,
            message.exchange,
            message.routing_key,
            message.properties,
            message.body,
            token,
            expires,
        )
        self.appended_bytes += len(message.body) + FLOW_OVERHEAD_BYTES
        if self.appended_bytes >= self._next_flow_mark:
            self._flow_mark(store)
        return message_id

    def remove(self, vhost: str, queue: str, message_id: int) -> None:
        """Queue the removal of a stored entry."""
        if self._open:
            assert self.store is not None
            self.store.remove(vhost, queue, message_id)

    def delivered(self, vhost: str, queue: str, message_id: int, count: int) -> None:
        """Queue a stored entry's new delivery count."""
        if self._open:
            assert self.store is not None
            self.store.record_delivery(vhost, queue, message_id, count)

    def read(self, message_ids: Sequence[int]) -> Mapping[int, Message]:
        """Read messages back (blocking, about 5 ms per 1000 on a warm cache).

        A message whose checksum fails stops the broker (strict mode: it is
        never delivered with wrong bytes, and ``--skip-corrupt`` lets the
        next start drop it), or is left out (skip mode) and so removed by
        the queue.
        """
        store = self.store
        if store is None or not self._open:
            return {}
        try:
            stored = store.read_messages(message_ids)
        except StoreCorruptError as e:
            self.log.error(
                "Refusing to deliver a damaged message: {error}. Restart with --skip-corrupt"
                " to drop it.",
                error=str(e),
            )
            self._fatal(EXIT_STORE_UNUSABLE)
            raise
        return {
            i: Message(m.exchange, m.routing_key, m.properties, m.body)
            for i, m in stored.items()
        }

    def delay(self, vhost: str, exchange: str, message: Message, due: float, token: object) -> int:
        """Store a delayed message in the virtual host's :data:`DELAYED_QUEUE`."""
        store = self.store
        if not self._open or store is None:
            return 0
        if vhost not in self._delayed_queues:
            store.put_queue(QueueRecord(vhost, DELAYED_QUEUE))
            self._delayed_queues.add(vhost)
        properties = message.properties
        headers = dict(properties.headers or {})
        headers[DUE_HEADER] = due
        self._last_id = message_id = store.append(
            vhost,
            (DELAYED_QUEUE,),
            exchange,
            message.routing_key,
            evolve(properties, headers=headers),
            message.body,
            token,
        )
        self.appended_bytes += len(message.body) + FLOW_OVERHEAD_BYTES
        if self.appended_bytes >= self._next_flow_mark:
            self._flow_mark(store)
        return message_id

    def undelay(self, vhost: str, message_id: int) -> None:
        """Forget a stored delayed message (released or dropped)."""
        self.remove(vhost, DELAYED_QUEUE, message_id)

    # -- what is committed (for paging out) -------------------------------------------

    def mark(self) -> None:
        """Ask the store to report when everything appended so far is written.

        One barrier at a time; its report moves :attr:`committed` forward.
        """
        store = self.store
        if (
            store is None
            or not self._open
            or self._failed
            or self._mark is not None
            or self._last_id <= self.committed
        ):
            return
        self._mark = _Committed(self._last_id)
        store.barrier(self._mark)

    @property
    def unsafe(self) -> Callable[[int], bool] | None:
        """A test for ids that may have been in a failed batch, None when there are none."""
        ranges = self._unsafe
        if not ranges:
            return None
        return lambda message_id: any(low < message_id <= high for low, high in ranges)

    # -- StoreListener ---------------------------------------------------------------------

    def batch_committed(self, tokens: Sequence[object]) -> None:
        """A batch is on disk: ack the publishes it held."""
        mark = self._mark
        if mark is not None and mark in tokens:
            self._mark = None
            self.committed = max(self.committed, mark.message_id)
        self._in_batch(settle_stored, tokens, True)
        if self._flow_marks:
            self._in_batch(self._flow_written, tokens)

    def batch_failed(self, tokens: Sequence[object], error: StoreWriteError) -> None:
        """A batch was not written: nack its publishes.

        Every id appended since the last known commit may have been in it:
        those are never paged out (their bodies could not be read back).
        """
        self.log.warn(
            "Store write failed; nacking {count} publishes: {error}",
            count=len(tokens),
            error=str(error),
        )
        if self._last_id > self.committed:
            self._unsafe.append((self.committed, self._last_id))
        mark = self._mark
        if mark is not None and mark in tokens:
            self._mark = None
        self._in_batch(settle_stored, tokens, False)
        if self._flow_marks:
            # A failed batch's publishes left the store's queue too.
            self._in_batch(self._flow_written, tokens)

    def state_changed(self, state: StoreState, error: StoreWriteError | None) -> None:
        """Disk full blocks publishers until a write succeeds again; a fatal error stops."""
        if state is StoreState.BLOCKED:
            self.log.error(
                "The store's disk is full ({error}): publishers are blocked until a write"
                " succeeds; consumers keep draining",
                error=str(error),
            )
            self._in_batch(self.set_blocked, DISK_FULL, True)
        elif state is StoreState.OK:
            self.log.info("The store writes again: disk-full alarm cleared")
            self._in_batch(self.set_blocked, DISK_FULL, False)
        else:
            self.log.error(
                "The store failed and will not write again: {error}. Stopping the broker"
                " (exit status {code}); confirmed messages are on disk.",
                error=str(error),
                code=EXIT_STORE_FAILED,
            )
            self._failed = True
            self._fatal(EXIT_STORE_FAILED)

    def _fatal(self, code: int) -> None:
        self._failed = True
        if self._on_fatal is not None:
            self._on_fatal(code)

    def _in_batch(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function`` as one output batch of the server, then write what it produced."""
        notifier = self._notifier
        if notifier is None:
            function(*args)
            return
        notifier.batch_depth += 1
        try:
            with self.log.failuresHandled("Handling a store report failed"):
                function(*args)
        finally:
            notifier.batch_depth -= 1
            notifier.flush_if_idle()


class PersistenceService(Service):
    """Loads the store and rebuilds the core before anything listens; closes it last.

    ``open_store`` builds the store with the given listener (the adapter);
    ``clock`` drives the free-disk check of ``data_dir`` every
    ``disk_check_seconds`` against ``disk_free_limit`` bytes (0 disables it;
    ``disk_usage`` is injectable for tests).  ``on_fatal`` is called with
    an exit status when the store fails for good; a store that cannot be
    opened raises ``SystemExit`` with :data:`EXIT_STORE_UNUSABLE` after
    logging why.  ``flow_high_bytes``/``flow_low_bytes`` are the publisher
    flow-control watermarks of :class:`StoreAdapter`.
    """

    log = Logger()

    def __init__(
        self,
        broker: Broker,
        open_store: Callable[[StoreListener], Store],
        clock: IReactorTime,
        *,
        notifier: Notifier | None = None,
        on_fatal: Callable[[int], object] | None = None,
        data_dir: str | None = None,
        disk_free_limit: int = 0,
        disk_check_seconds: float = DISK_CHECK_SECONDS,
        disk_usage: Callable[[str], Any] = shutil.disk_usage,
        skip_corrupt: bool = False,
        describe: str = "the store",
        page_out_seconds: float = PAGE_OUT_SECONDS,
        flow_high_bytes: int = DEFAULT_FLOW_HIGH_BYTES,
        flow_low_bytes: int = DEFAULT_FLOW_LOW_BYTES,
    ) -> None:
        self._broker = broker
        self._open_store = open_store
        self._clock = clock
        self._data_dir = data_dir
        self._disk_free_limit = disk_free_limit
        self._disk_check_seconds = disk_check_seconds
        self._disk_usage = disk_usage
        self._describe = describe
        self.adapter = StoreAdapter(
            notifier,
            on_fatal,
            skip_corrupt=skip_corrupt,
            flow_high_bytes=flow_high_bytes,
            flow_low_bytes=flow_low_bytes,
        )
        self.loaded: LoadedState | None = None
        self._disk_check: LoopingCall | None = None
        self._pager: LoopingCall | None = None
        self._page_out_seconds = page_out_seconds

    # -- the service's life -----------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Load the store and rebuild the core: before the listeners bind their ports."""
        if self.loaded is None:
            self.load()
        super().privilegedStartService()

    def startService(self) -> None:
        """Load if not done yet (no privileged start), then start watching the free disk space."""
        if self.loaded is None:
            self.load()
        super().startService()
        if self._disk_free_limit > 0 and self._data_dir is not None:
            check = self._disk_check = LoopingCall(self._check_disk)
            check.clock = self._clock
            check.start(self._disk_check_seconds, now=True).addErrback(
                lambda f: self.log.failure("The free disk check stopped", f)
            )
        if self._page_out_seconds > 0:
            pager = self._pager = LoopingCall(self.page_out)
            pager.clock = self._clock
            pager.start(self._page_out_seconds, now=False).addErrback(
                lambda f: self.log.failure("Paging out stopped", f)
            )

    def stopService(self) -> None:
        """Stop the timers and close the store (commits what is queued; clean flag)."""
        super().stopService()
        for name in ("_disk_check", "_pager"):
            call: LoopingCall | None = getattr(self, name)
            setattr(self, name, None)
            if call is not None and call.running:
                call.stop()
        self.adapter.close()
        self.log.info("Closed {store}", store=self._describe)

    # -- start-up ------------------------------------------------------------------------

    def load(self) -> LoadedState:
        """Open and load the store, rebuild the core from it, log what was recovered.

        Raises ``SystemExit`` (after logging the file and position) when the
        store is damaged, locked by another broker or not ours.
        """
        started = time.perf_counter()
        adapter = self.adapter
        store = self._open_store(adapter)
        try:
            loaded = store.load()
        except StoreCorruptError as e:
            self.log.error(
                "Refusing to start: {error}. Restart with --skip-corrupt to salvage what is"
                " readable (the damaged file is kept beside it).",
                error=str(e),
            )
            raise SystemExit(EXIT_STORE_UNUSABLE) from e
        except StoreError as e:
            self.log.error("Refusing to start: {error}", error=str(e))
            raise SystemExit(EXIT_STORE_UNUSABLE) from e
        adapter.attach(store)
        # Deadlines of what is rebuilt (x-expires, delayed messages; TTLs without a
        # stored deadline) count from now; stored message deadlines are kept.
        self._broker.advance(self._clock.seconds())
        for warning in loaded.warnings:
            self.log.warn("Store recovery: {warning}", warning=warning)
        queues, delayed = self._rebuild(loaded)
        self.loaded = loaded
        self.log.info(
            "Recovered {queues} queues, {count} messages and {delayed} delayed messages"
            " in {seconds:.2f} s from {store} ({shutdown} shut-down)",
            queues=queues,
            count=loaded.message_count - delayed,
            delayed=delayed,
            seconds=time.perf_counter() - started,
            store=self._describe,
            shutdown="clean" if loaded.clean_shutdown else "unclean",
        )
        return loaded

    def _rebuild(self, loaded: LoadedState) -> tuple[int, int]:
        """Recreate topology, then messages; return (queues, delayed messages) recovered.

        Topology is rebuilt before the adapter is plugged in, so it is not
        written back; messages after, so reading them back works.
        """
        broker = self._broker
        for x in loaded.exchanges:
            try:
                broker.add_vhost(x.vhost).restore_exchange(
                    x.name, x.type, x.auto_delete, x.internal, x.arguments
                )
            except (KeyError, ChannelError) as e:
                self.log.warn(
                    "Stored exchange {exchange!r} of vhost {vhost!r} skipped: {error!r}",
                    exchange=x.name,
                    vhost=x.vhost,
                    error=e,
                )
        queues = 0
        for q in loaded.queues:
            if q.name == DELAYED_QUEUE:
                self.adapter._delayed_queues.add(q.vhost)
                continue
            try:
                broker.add_vhost(q.vhost).restore_queue(q.name, q.auto_delete, q.arguments)
                queues += 1
            except ChannelError as e:
                self.log.warn(
                    "Stored queue {queue!r} of vhost {vhost!r} skipped: {error}",
                    queue=q.name,
                    vhost=q.vhost,
                    error=str(e),
                )
        for b in loaded.bindings:
            if not broker.add_vhost(b.vhost).restore_binding(
                b.source, b.destination, b.destination_kind, b.routing_key, b.arguments
            ):
                self.log.warn(
                    "Stored binding {source!r} -> {destination!r} of vhost {vhost!r} skipped:"
                    " an end is missing",
                    source=b.source,
                    destination=b.destination,
                    vhost=b.vhost,
                )
        broker.use_persistence(self.adapter)
        crashed = not loaded.clean_shutdown
        delayed = 0
        for (vhost_name, name), index in loaded.messages.items():
            vhost = broker.vhosts.get(vhost_name)
            if vhost is None or not len(index):
                continue
            if name == DELAYED_QUEUE:
                delayed += self._recover_delayed(vhost_name, index)
                continue
            queue = vhost.queues.get(name)
            if queue is None:
                continue
            counts = index.delivery_counts
            if crashed:
                # docs/durability.md, "Crash windows": after a crash every recovered
                # message may have been delivered in the lost last batch.
                counts = array(DELIVERY_COUNT_TYPECODE, [c or 1 for c in counts])
            queue.recover(index.message_ids, counts, index.expires)
        # Stored deadlines already past (the broker was down when they fell due)
        # expire now, dead-lettered "expired" as the sweeper would: after every
        # queue is rebuilt, so the dead-letter queues hold their older messages first.
        broker.expire(self._clock.seconds())
        return queues, delayed

    def _recover_delayed(self, vhost_name: str, index: QueueIndex) -> int:
        """Put stored delayed messages back on their exchanges' schedules; return how many."""
        vhost = self._broker.vhosts[vhost_name]
        adapter = self.adapter
        ids = index.message_ids
        count = 0
        for start in range(0, len(ids), _READ_BATCH):
            chunk = ids[start : start + _READ_BATCH]
            messages = adapter.read(chunk)
            for message_id in chunk:
                message = messages.get(message_id)
                exchange = vhost.exchanges.get(message.exchange) if message else None
                headers = dict(message.properties.headers or {}) if message else {}
                due = headers.pop(DUE_HEADER, None)
                if (
                    message is None
                    or exchange is None
                    or not exchange.delayed
                    or not isinstance(due, (int, float))
                ):
                    adapter.undelay(vhost_name, message_id)
                    continue
                properties = evolve(message.properties, headers=headers or None)
                vhost.delay_message(
                    exchange,
                    Message(message.exchange, message.routing_key, properties, message.body),
                    float(due),
                    message_id=message_id,
                )
                count += 1
        return count

    # -- paging out ----------------------------------------------------------------------

    def page_out(self) -> int:
        """Page out what is committed deep in durable queues, then mark what is appended.

        Runs on a timer: bodies of messages appended before the previous run
        and reported committed since leave memory (see :meth:`Queue.page_out`);
        never raises.  Return how many were paged out.
        """
        paged = 0
        with self.log.failuresHandled("Paging out failed"):
            adapter = self.adapter
            if adapter.committed and adapter.accepting_writes:
                paged = self._broker.page_out(adapter.committed, adapter.unsafe)
            adapter.mark()
        return paged

    # -- the free-disk alarm ----------------------------------------------------------------

    def _check_disk(self) -> None:
        """Block publishers while the data directory's free space is under the limit."""
        with self.log.failuresHandled("Checking the free disk space failed"):
            assert self._data_dir is not None
            free = self._disk_usage(self._data_dir).free
            low = free < self._disk_free_limit
            was = DISK_FREE_LIMIT in self.adapter._blocked
            if low and not was:
                self.log.error(
                    "Free disk space {free} bytes is below --disk-free-limit {limit}:"
                    " publishers are blocked",
                    free=free,
                    limit=self._disk_free_limit,
                )
            elif was and not low:
                self.log.info(
                    "Free disk space {free} bytes is above --disk-free-limit again:"
                    " publishers are unblocked",
                    free=free,
                )
            self.adapter._in_batch(self.adapter.set_blocked, DISK_FREE_LIMIT, low)
