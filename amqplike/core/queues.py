"""Queues: FIFO storage of entries and round-robin dispatch to consumers.

A queue holds *entries*, one small slots object per (queue, message), which
carry the per-queue state of a message: its enqueue sequence number and how
many times it was delivered.  Ready entries sit in a deque (O(1) at both
ends).  Requeued entries go to a small heap keyed by sequence number that is
read before the deque: every requeued entry was taken from the head, so it is
older than anything still in the deque, and the heap puts requeued entries
back in their original relative order (AMQP 0-9-1, 1.8.3.13: a requeued
message goes back to its original position where possible).

Dispatch keeps a deque of the consumers that may have credit ("waiting"
consumers).  A consumer found without credit leaves it and is put back only
when its credit may have changed (an ack, a qos change, flow resumed), so a
publish to a queue whose consumers are all full costs O(1), not a scan.

Two methods are the single exits of a message: :meth:`Queue.ack`
(consumed) and :meth:`Queue.drop` (let go unconsumed, with a
:class:`DropReason`; it dead-letters when the queue has
``x-dead-letter-exchange``).  Both tell the durable store
(:class:`~amqplike.core.persistence.Persistence`) when the entry is stored.

**Stored entries and paged-out messages.**  In a durable queue a persistent
message's entry carries its store id (``message_id``).  Messages recovered
from the store at start-up are not loaded: a plain queue holds them as a
*cold run*, two compact arrays of ids and delivery counts (12 bytes per
message) sitting in the ready deque like one entry.  When the head of the
queue reaches a cold run, the next :data:`THAW_BATCH` messages are read back
from the store in one call and become ordinary entries; so memory follows
what consumers are about to take, not the depth of the queue.  Live
messages are paged out the same way (:meth:`Queue.page_out`, run by the
store service about once a second): in a durable plain queue, the stored
entries more than :data:`PAGE_KEEP_HOT` items behind the head whose write
was committed become cold runs, and their bodies leave memory.  A queue that
leaves the plain path (below) reads its cold runs back first.

**Plain and policy queues.**  A queue declared without any of the arguments
of ``docs/queue-arguments.md`` (or with only ``x-dead-letter-*``,
``x-expires`` and ``x-consumer-timeout``, which need no per-message
bookkeeping) is *plain* and runs the code above and nothing else.  A queue
with TTL, limits, priorities, a delivery limit or a backoff, or a plain
queue that received a message with an ``expiration`` (it switches for
good), runs the *policy* paths, which add:

- per-entry states (ready, held, out, gone) and counts of ready+held
  messages and bytes for ``x-max-length``/``x-max-length-bytes``;
- lazy deletion: an entry expired in the middle of the queue is marked gone
  and skipped when it reaches the head (the structures are compacted when
  more than half of them is gone, so memory follows live messages);
- a heap keyed by ``(-priority, seq)`` instead of deque + heap for
  ``x-max-priority`` (higher first, FIFO within a priority, requeued entries
  back at their place);
- deadlines on the broker's :class:`Schedule`: message TTL, ``x-expires``,
  ``x-retry-backoff`` hold-backs.  An expired entry is also caught when it
  is about to be delivered and when it is requeued, so none is delivered
  after its expiry whatever the sweeper's timing.
"""

from __future__ import annotations

import heapq
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from attrs import define, field

from amqplike.core.arguments import (
    DROP_HEAD,
    REJECT_PUBLISH_DLX,
    QueuePolicy,
    parse_expiration,
)
from amqplike.core.message import DropReason, Message
from amqplike.core.persistence import NO_PERSISTENCE, Persistence
from amqplike.core.schedule import Schedule
from amqplike.errors import ChannelError

if TYPE_CHECKING:
    from amqplike.core.broker import Connection
    from amqplike.core.channel import Channel
    from amqplike.core.exchanges import Binding, Exchange
    from amqplike.core.vhost import VirtualHost

# Entry states.  Plain queues never change them (their entries stay READY);
# policy queues keep them exact for every entry with a deadline.
#: In the ready structures (waiting for a consumer).
READY: Final = 0
#: Nacked and held back by ``x-retry-backoff``; counted as in the queue.
HELD: Final = 1
#: Delivered and not yet settled.
OUT: Final = 2
#: Left the queue (acked, expired, dropped, purged); skipped where it still sits.
GONE: Final = 3

#: Typecodes of a cold run's arrays: signed 64-bit ids, unsigned 32-bit delivery counts
#: (those of the store's recovered index).
_ID_TYPECODE: Final = "q"
_COUNT_TYPECODE: Final = "L"
#: Compact a ready structure once this many gone entries sit in it (and half of it is gone).
_COMPACT_GONE: Final = 64
#: Messages of a cold run read back from the store at once (one blocking read of a few ms).
THAW_BATCH: Final = 1000
#: Ready items a durable queue keeps in memory at its head; committed messages behind
#: them may be paged out (:meth:`Queue.page_out`).
PAGE_KEEP_HOT: Final = 10_000
#: Page out only when at least this many items are behind the hot head.
PAGE_MIN: Final = 1000


@define(eq=False, slots=True)
class QueueEntry:
    """One message in one queue: its place (``seq``) and delivery history.

    ``delivery_count`` counts deliveries so far; a message delivered before is
    redelivered (``basic.deliver`` ``redelivered`` flag) with the count in
    its ``x-delivery-count`` header, and ``x-delivery-limit`` reads it.
    ``expires_at`` is the absolute expiry time (seconds), None without TTL;
    ``state`` is one of ``READY``, ``HELD``, ``OUT``, ``GONE``.
    ``message_id`` is the message's id in the durable store, 0 when not stored.
    """

    seq: int
    message: Message
    delivery_count: int = 0
    expires_at: float | None = None
    state: int = READY
    message_id: int = 0


class _ColdRun:
    """Stored messages of a queue whose bodies are not in memory (see the module docstring).

    ``ids[pos:]`` and ``counts[pos:]`` are the message ids and delivery
    counts still cold, oldest first; the entry made of ``ids[i]`` gets
    sequence number ``seq0 + i``, so requeued messages keep their place.
    """

    __slots__ = ("counts", "ids", "pos", "seq0")

    def __init__(self, ids: array[int], counts: array[int], seq0: int) -> None:
        self.ids = ids
        self.counts = counts
        self.seq0 = seq0
        self.pos = 0

    def __len__(self) -> int:
        return len(self.ids) - self.pos


@define(eq=False, slots=True)
class Consumer:
    """A ``basic.consume`` subscription of one channel to one queue."""

    tag: str
    queue: Queue
    channel: Channel
    no_ack: bool = False
    exclusive: bool = False
    #: Per-consumer prefetch window (``basic.qos`` with ``global=false``); 0 is unlimited.
    prefetch_count: int = 0
    arguments: Mapping[str, Any] = field(factory=dict)
    #: Deliveries to this consumer not yet acked, nacked or rejected.
    unacked: int = 0
    #: True while in the queue's deque of consumers that may take a message.
    waiting: bool = False
    cancelled: bool = False
    #: Ack timeout of its deliveries in seconds (``x-consumer-timeout`` or the
    #: queue's or the broker's); 0 for none.
    timeout: float = 0.0

    def has_credit(self) -> bool:
        """Whether the next message may go to this consumer now.

        A ``no_ack`` consumer is never limited by prefetch (its deliveries are
        settled at once); others are held by their own window and by the
        channel's shared (``global``) window; ``channel.flow`` pauses all.
        """
        channel = self.channel
        if not channel.flow_active or not channel.is_open or self.cancelled:
            return False
        if self.no_ack:
            return True
        if self.prefetch_count and self.unacked >= self.prefetch_count:
            return False
        limit = channel.global_prefetch
        return not limit or channel.consumer_unacked < limit

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} on {self.queue.name!r}>"


class _EntryExpiry:
    """Schedule task: a message's TTL is up (see :meth:`Queue.expire_entry`)."""

    __slots__ = ("entry", "queue")

    def __init__(self, queue: Queue, entry: QueueEntry) -> None:
        self.queue = queue
        self.entry = entry

    def live(self) -> bool:
        # Delivered entries keep their task: if they come back before the
        # deadline it is still needed.  Acked/dropped ones are GONE.
        return self.entry.state != GONE and not self.queue.deleted

    def fire(self, now: float) -> None:
        self.queue.expire_entry(self.entry, now)


class _HeldReturn:
    """Schedule task: a message held back by ``x-retry-backoff`` is ready again."""

    __slots__ = ("entry", "queue")

    def __init__(self, queue: Queue, entry: QueueEntry) -> None:
        self.queue = queue
        self.entry = entry

    def live(self) -> bool:
        return self.entry.state == HELD and not self.queue.deleted

    def fire(self, now: float) -> None:
        self.queue.release_held(self.entry)


class _QueueExpiry:
    """Schedule task: check whether an ``x-expires`` queue has been unused long enough."""

    __slots__ = ("queue",)

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def live(self) -> bool:
        return not self.queue.deleted

    def fire(self, now: float) -> None:
        self.queue.check_expiry(now)


@define(eq=False, slots=True)
class Queue:
    """A queue of one virtual host: its flags, stored entries and consumers.

    ``policy`` is what its arguments ask for (None for a plain queue);
    ``host`` the virtual host it dead-letters through; ``schedule`` the
    broker's deadline heap, whose ``now`` is the core's current time.
    """

    name: str
    vhost: str
    durable: bool = False
    #: The connection owning an exclusive queue, None for a shared one.
    exclusive_owner: Connection | None = None
    auto_delete: bool = False
    arguments: Mapping[str, Any] = field(factory=dict)
    #: Bindings with this queue as destination, each with its source exchange.
    bindings: dict[Binding, Exchange] = field(factory=dict)
    exclusive_consumer: Consumer | None = None
    #: Auto-delete only applies once a queue has had a consumer (RabbitMQ).
    had_consumer: bool = False
    deleted: bool = False
    policy: QueuePolicy | None = None
    host: VirtualHost | None = None
    schedule: Schedule = field(factory=Schedule)
    # Ready entries; cold runs (recovered messages not yet read back) sit in
    # it too, only when ``_runs`` is not 0.
    _ready: deque[Any] = field(factory=deque, init=False)
    _requeued: list[tuple[int, QueueEntry]] = field(factory=list, init=False)
    _next_seq: int = field(default=0, init=False)
    _consumers: dict[Consumer, None] = field(factory=dict, init=False)
    _waiting: deque[Consumer] = field(factory=deque, init=False)
    #: True while no policy path is needed (see the module docstring).
    _plain: bool = field(default=True, init=False)
    # Policy queues only: ready+held entries and their body bytes, the held
    # entries, gone entries still sitting in the ready structures, and the
    # priority heap of (-priority, seq, entry).
    _count: int = field(default=0, init=False)
    _bytes: int = field(default=0, init=False)
    _held: dict[QueueEntry, None] = field(factory=dict, init=False)
    _gone: int = field(default=0, init=False)
    _by_priority: list[tuple[int, int, QueueEntry]] | None = field(default=None, init=False)
    _last_used: float = field(default=0.0, init=False)
    _expiry_armed: bool = field(default=False, init=False)
    # Cold runs in ``_ready`` and the messages they hold.
    _runs: int = field(default=0, init=False)
    _cold: int = field(default=0, init=False)
    #: Store ids of this queue's delivered, unsettled entries (kept by a purge).
    _out_ids: set[int] = field(factory=set, init=False)
    #: Ready items older than this sequence number need no look by :meth:`page_out`.
    _scan_seq: int = field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        policy = self.policy
        if policy is not None:
            self._plain = policy.keeps_fast_path
            if policy.max_priority is not None:
                self._by_priority = []
            self._last_used = self.schedule.now
            self._arm_expiry()

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} messages={self.message_count}>"

    @property
    def exclusive(self) -> bool:
        """True for a queue owned by one connection."""
        return self.exclusive_owner is not None

    @property
    def stored(self) -> bool:
        """Whether persistent messages of this queue are stored (durable and not exclusive)."""
        return self.durable and self.exclusive_owner is None

    @property
    def persistence(self) -> Persistence:
        """The durable store's port (through the virtual host)."""
        host = self.host
        return host.persistence if host is not None else NO_PERSISTENCE

    @property
    def message_count(self) -> int:
        """Ready messages (delivered but unacked ones are not counted, as in AMQP).

        Messages held back by ``x-retry-backoff`` count as ready: they are in
        the queue, only not yet deliverable.
        """
        if self._plain:
            return len(self._ready) - self._runs + self._cold + len(self._requeued)
        return self._count

    @property
    def cold_count(self) -> int:
        """Ready messages whose bodies are on disk only (recovered, not yet read back)."""
        return self._cold

    @property
    def unsettled_ids(self) -> frozenset[int]:
        """Store ids of delivered, unsettled entries (what a purge keeps in the store)."""
        return frozenset(self._out_ids)

    @property
    def message_bytes(self) -> int:
        """Body bytes of the ready messages (what ``x-max-length-bytes`` limits).

        Messages paged out to the store (cold runs) are not counted.
        """
        if self._plain:
            return sum(
                len(e.message.body) for e in self._ready if e.__class__ is not _ColdRun
            ) + sum(len(e.message.body) for _, e in self._requeued)
        return self._bytes

    @property
    def consumer_count(self) -> int:
        """Active consumers."""
        return len(self._consumers)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The active consumers, oldest first."""
        return tuple(self._consumers)

    # -- the plain fast path, branching to the policy path -----------------------------

    def enqueue(
        self, message: Message, now: float, ttl: int | None = None, message_id: int = 0
    ) -> bool:
        """Append a message and hand it to a consumer if one has credit.

        ``now`` is the publish time; ``ttl`` the message's own ``expiration``
        in ms (None without); ``message_id`` its store id when it was stored
        for this queue.  False when the queue refused the message
        (``x-overflow`` ``reject-publish``/``reject-publish-dlx`` and full):
        the publisher gets a nack, and the caller removes a stored one.
        """
        if self._plain and ttl is None:
            seq = self._next_seq
            self._next_seq = seq + 1
            if message_id:
                self._ready.append(QueueEntry(seq, message, 0, None, READY, message_id))
            else:
                self._ready.append(QueueEntry(seq, message))
            if self._waiting:
                self.dispatch()
            return True
        return self._enqueue_policy(message, now, ttl, message_id)

    def pop(self) -> QueueEntry | None:
        """Take the head entry (requeued ones first, oldest first), or None.

        On a policy queue, expired entries met on the way are dropped and
        the highest priority goes first.  A cold run at the head is read
        back first (:meth:`_thaw_head`).
        """
        if not self._plain:
            return self._pop_policy()
        if self._requeued:
            return heapq.heappop(self._requeued)[1]
        ready = self._ready
        if self._runs:
            while ready and ready[0].__class__ is _ColdRun:
                self._thaw_head()
            if not self._plain:
                # A read-back message had its own TTL: the queue left the plain path.
                return self._pop_policy()
        if ready:
            return ready.popleft()  # type: ignore[no-any-return]
        return None

    def record_delivery(self, entry: QueueEntry) -> int:
        """Count a delivery of ``entry`` (``basic.deliver`` or ``basic.get``); return the old count.

        A stored entry's new count goes to the store, so a restart knows it
        was delivered (``redelivered=True``).
        """
        count = entry.delivery_count
        entry.delivery_count = count + 1
        message_id = entry.message_id
        if message_id:
            self._out_ids.add(message_id)
            self.persistence.delivered(self.vhost, self.name, message_id, count + 1)
        return count

    # -- stored messages: recovery and cold runs ---------------------------------------

    def recover(
        self,
        message_ids: Sequence[int],
        delivery_counts: Sequence[int],
        expires: Sequence[float] | None = None,
    ) -> None:
        """Append messages recovered from the store, oldest first, with their delivery counts.

        ``expires`` (None when no entry has a deadline) holds each entry's
        stored absolute expiry time, NaN for none: the original deadline is
        kept, and one already past is due at once (the caller runs the
        schedule after recovery, which dead-letters it ``expired``).  A
        plain queue without deadlines keeps its messages as one cold run
        (ids and counts only; bodies are read back as consumers reach them).
        A policy queue (or one with deadlines, which takes the policy paths)
        needs every message's properties (TTL, priority, sizes), so it reads
        them back now, in batches of :data:`THAW_BATCH`.  A TTL whose
        deadline was not stored (a store of format 1) counts from now.
        """
        n = len(message_ids)
        if not n:
            return
        if expires is not None and self._plain:
            self._to_policy_mode()
        if self._plain:
            run = _ColdRun(
                message_ids if isinstance(message_ids, array) else array(_ID_TYPECODE, message_ids),
                (
                    delivery_counts
                    if isinstance(delivery_counts, array)
                    else array(_COUNT_TYPECODE, delivery_counts)
                ),
                self._next_seq,
            )
            self._next_seq += n
            self._ready.append(run)
            self._runs += 1
            self._cold += n
            return
        persistence = self.persistence
        now = self.schedule.now
        for start in range(0, n, THAW_BATCH):
            ids = message_ids[start : start + THAW_BATCH]
            counts = delivery_counts[start : start + THAW_BATCH]
            deadlines: Sequence[float | None] = (
                [None if e != e else e for e in expires[start : start + THAW_BATCH]]
                if expires is not None
                else [None] * len(ids)
            )
            messages = persistence.read(ids)
            for message_id, count, deadline in zip(ids, counts, deadlines):
                message = messages.get(message_id)
                if message is None or not self._enqueue_policy(
                    message, now, _message_ttl(message), message_id, count, deadline
                ):
                    persistence.remove(self.vhost, self.name, message_id)

    def _thaw_head(self) -> None:
        """Read back the next :data:`THAW_BATCH` messages of the cold run at the head.

        They become ordinary entries in front of what is left of the run.
        Ids the store no longer has (lost to a skipped corruption) are
        removed from it and skipped.  The read happens before anything
        changes, so a read that raises leaves the queue as it was.
        """
        ready = self._ready
        run: _ColdRun = ready[0]
        start = run.pos
        end = min(start + THAW_BATCH, len(run.ids))
        ids = run.ids[start:end]
        counts = run.counts[start:end]
        persistence = self.persistence
        messages = persistence.read(ids)
        ready.popleft()
        run.pos = end
        self._cold -= end - start
        if end < len(run.ids):
            ready.appendleft(run)
        else:
            self._runs -= 1
        entries = []
        expiring = []
        seq = run.seq0 + start
        for message_id, count in zip(ids, counts):
            message = messages.get(message_id)
            if message is None:
                persistence.remove(self.vhost, self.name, message_id)
            else:
                entry = QueueEntry(seq, message, count, None, READY, message_id)
                entries.append(entry)
                if message.properties.expiration is not None:
                    expiring.append(entry)
            seq += 1
        ready.extendleft(reversed(entries))
        if expiring:
            # A message with its own TTL: the queue takes the policy paths, as
            # it did when the message was published; its TTL counts from now.
            self._to_policy_mode()
            self._start_ttls(expiring)

    def _start_ttls(self, entries: Iterable[QueueEntry]) -> None:
        """Give read-back entries with an ``expiration`` a deadline counted from now."""
        now = self.schedule.now
        for entry in entries:
            ttl = _message_ttl(entry.message)
            if ttl is not None:
                entry.expires_at = deadline = now + ttl / 1000
                self.schedule.push(deadline, _EntryExpiry(self, entry))

    def page_out(
        self, committed: int, unsafe: Callable[[int], bool] | None = None
    ) -> int:
        """Drop from memory the bodies of stored messages far from the head; return how many.

        Only a stored plain queue pages out, and only entries more than
        :data:`PAGE_KEEP_HOT` ready items behind the head whose store id is
        at most ``committed`` (their write was reported committed, so they
        can be read back) and for which ``unsafe(id)`` is false (an id that
        may have been in a failed batch).  Consecutive ones become cold runs
        (adjacent runs are extended).  Cost: the items behind the hot head
        that are not yet cold, so about what arrived since the last call.
        """
        if not self._plain or not self.stored or self.deleted:
            return 0
        ready = self._ready
        behind = len(ready) - PAGE_KEEP_HOT
        if behind < PAGE_MIN:
            return 0
        # Items before ``_scan_seq`` were settled by an earlier call (paged, or
        # never pageable: transient or unsafe): take only the newer ones.
        scan = self._scan_seq
        tail = []
        while behind > 0:
            item = ready[-1]
            if (item.seq0 if item.__class__ is _ColdRun else item.seq) < scan:
                break
            tail.append(ready.pop())
            behind -= 1
        if not tail:
            return 0
        tail.reverse()
        out: list[Any] = []
        run: _ColdRun | None = ready[-1] if ready and ready[-1].__class__ is _ColdRun else None
        paged = 0
        pending = -1  # seq of the first item that may become pageable later
        for item in tail:
            if item.__class__ is _ColdRun:
                run = item
                out.append(item)
                continue
            message_id = item.message_id
            if (
                not message_id
                or message_id > committed
                or (unsafe is not None and unsafe(message_id))
            ):
                if message_id > committed and pending < 0:
                    pending = item.seq
                run = None
                out.append(item)
                continue
            if run is not None and run.seq0 + len(run.ids) == item.seq:
                run.ids.append(message_id)
                run.counts.append(item.delivery_count)
            else:
                run = _ColdRun(
                    array(_ID_TYPECODE, (message_id,)),
                    array(_COUNT_TYPECODE, (item.delivery_count,)),
                    item.seq,
                )
                out.append(run)
                self._runs += 1
            paged += 1
        self._cold += paged
        ready.extend(out)
        self._scan_seq = pending if pending >= 0 else self._next_seq
        return paged

    def _thaw_all(self) -> list[QueueEntry]:
        """Read back every cold run (before the queue leaves the plain path).

        Return the entries read back whose message has its own ``expiration``.
        """
        expiring = []
        ready = self._ready
        items = list(ready)
        ready.clear()
        self._runs = self._cold = 0
        persistence = self.persistence
        for item in items:
            if item.__class__ is not _ColdRun:
                ready.append(item)
                continue
            seq = item.seq0 + item.pos
            for start in range(item.pos, len(item.ids), THAW_BATCH):
                ids = item.ids[start : start + THAW_BATCH]
                messages = persistence.read(ids)
                for message_id, count in zip(ids, item.counts[start : start + THAW_BATCH]):
                    message = messages.get(message_id)
                    if message is None:
                        persistence.remove(self.vhost, self.name, message_id)
                    else:
                        entry = QueueEntry(seq, message, count, None, READY, message_id)
                        ready.append(entry)
                        if message.properties.expiration is not None:
                            expiring.append(entry)
                    seq += 1
        return expiring

    def requeue(self, entries: Iterable[QueueEntry], *, retry: bool = False) -> None:
        """Put delivered entries back at their original place; call :meth:`dispatch` after.

        ``retry`` marks a ``basic.nack``/``basic.reject`` with ``requeue``,
        which ``x-retry-backoff`` holds back (a closed channel's returns are
        not held).  On a policy queue an entry over ``x-delivery-limit`` is
        dead-lettered and an expired one dropped instead.  Entries of a
        deleted queue have nowhere to go and are forgotten.
        """
        if self.deleted:
            return
        out = self._out_ids
        if out:
            entries = list(entries)
            for entry in entries:
                out.discard(entry.message_id)
        if not self._plain:
            self._requeue_policy(entries, retry)
            return
        requeued = self._requeued
        for entry in entries:
            heapq.heappush(requeued, (entry.seq, entry))

    def ack(self, entry: QueueEntry) -> None:
        """The one place a message leaves the queue consumed (ack or auto-ack).

        A stored message is removed from the store here.
        """
        entry.state = GONE
        message_id = entry.message_id
        if message_id:
            self._out_ids.discard(message_id)
            self.persistence.remove(self.vhost, self.name, message_id)

    def drop(self, entry: QueueEntry, reason: DropReason) -> None:
        """The one place a message leaves the queue unconsumed (reject, TTL, max-length ...).

        The caller has taken the entry out of the ready structures.  With an
        ``x-dead-letter-exchange`` the message is republished there first
        (:meth:`VirtualHost.dead_letter`); a stored original is removed from
        the store at the end of this method, after the copies were appended,
        so a crash between the two halves duplicates at worst.
        """
        entry.state = GONE
        self._dead_letter(entry.message, reason)
        message_id = entry.message_id
        if message_id:
            self._out_ids.discard(message_id)
            self.persistence.remove(self.vhost, self.name, message_id)

    def _dead_letter(self, message: Message, reason: DropReason) -> None:
        policy = self.policy
        if policy is not None and policy.dead_letter_exchange is not None and self.host:
            self.host.dead_letter(self, message, reason)

    def purge(self) -> int:
        """Remove the ready (and held) messages, not those delivered and unacked; return how many."""
        count = self.message_count
        if not self._plain:
            for entry in self._ready_entries():
                entry.state = GONE
            for entry in self._held:
                entry.state = GONE
            self._held.clear()
            if self._by_priority is not None:
                self._by_priority.clear()
            self._count = self._bytes = self._gone = 0
        self._ready.clear()
        self._requeued.clear()
        self._runs = self._cold = 0
        return count

    def add_consumer(self, consumer: Consumer) -> None:
        """Subscribe a consumer; call :meth:`dispatch` after."""
        self._consumers[consumer] = None
        self.had_consumer = True
        if consumer.exclusive:
            self.exclusive_consumer = consumer
        self.wake(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        """Unsubscribe a consumer; its unacked deliveries stay with its channel."""
        consumer.cancelled = True
        self._consumers.pop(consumer, None)
        if consumer.waiting:
            consumer.waiting = False
            self._waiting.remove(consumer)
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        if not self._consumers and self.policy is not None and self.policy.expires:
            # Unused from now on (x-expires counts from the last consumer going).
            self.touch(self.schedule.now)

    def wake(self, consumer: Consumer) -> None:
        """Note that a consumer may have credit again; call :meth:`dispatch` after."""
        if not consumer.waiting and not consumer.cancelled:
            consumer.waiting = True
            self._waiting.append(consumer)

    def dispatch(self) -> None:
        """Deliver ready messages round-robin to consumers while any has credit."""
        if not self._plain:
            self._dispatch_policy()
            return
        waiting = self._waiting
        while waiting and (self._requeued or self._ready):
            consumer = waiting[0]
            if not consumer.has_credit():
                waiting.popleft()
                consumer.waiting = False
                continue
            entry = self.pop()
            if entry is None:
                break  # a cold run whose messages were all gone
            # Round-robin (AMQP 0-9-1, 3.1.3.4): the next message goes to the next consumer.
            waiting.rotate(-1)
            consumer.channel.deliver_entry(consumer, self, entry)

    # -- policy paths --------------------------------------------------------------------

    def _to_policy_mode(self) -> None:
        """Leave the plain path for good (a message with its own TTL arrived).

        Cold runs are read back first: the policy paths need every message.
        """
        expiring = self._thaw_all() if self._runs else None
        self._plain = False
        entries = self._ready_entries()
        self._count = len(entries)
        self._bytes = sum(len(e.message.body) for e in entries)
        if expiring:
            self._start_ttls(expiring)

    def _ready_entries(self) -> list[QueueEntry]:
        """Every entry in the ready structures, gone ones included."""
        if self._by_priority is not None:
            return [item[2] for item in self._by_priority]
        return [e for _, e in self._requeued] + list(self._ready)

    def _push_ready(self, entry: QueueEntry, *, requeued: bool) -> None:
        """Put an entry in the ready structures (counted by the caller)."""
        entry.state = READY
        by_priority = self._by_priority
        if by_priority is not None:
            assert self.policy is not None and self.policy.max_priority is not None
            priority = min(entry.message.properties.priority or 0, self.policy.max_priority)
            heapq.heappush(by_priority, (-priority, entry.seq, entry))
        elif requeued:
            heapq.heappush(self._requeued, (entry.seq, entry))
        else:
            self._ready.append(entry)

    def _take_ready(self) -> QueueEntry | None:
        """Remove and return the next ready entry, skipping gone ones; None if none."""
        by_priority = self._by_priority
        if by_priority is not None:
            while by_priority:
                entry = heapq.heappop(by_priority)[2]
                if entry.state == READY:
                    return entry
                self._gone -= 1
            return None
        requeued = self._requeued
        while requeued:
            entry = heapq.heappop(requeued)[1]
            if entry.state == READY:
                return entry
            self._gone -= 1
        ready = self._ready
        while ready:
            head: QueueEntry = ready.popleft()
            if head.state == READY:
                return head
            self._gone -= 1
        return None

    def _take_counted(self) -> QueueEntry | None:
        """:meth:`_take_ready` and uncount the entry."""
        entry = self._take_ready()
        if entry is not None:
            self._count -= 1
            self._bytes -= len(entry.message.body)
        return entry

    def _enqueue_policy(
        self,
        message: Message,
        now: float,
        ttl: int | None,
        message_id: int = 0,
        delivery_count: int = 0,
        expires_at: float | None = None,
    ) -> bool:
        """Enqueue on the policy paths; ``expires_at`` is a recovered entry's stored deadline.

        A stored deadline replaces the one the TTL would give (counted from
        the original publish, not from now) and is pushed on the schedule
        even when past, so the next run of it expires the entry.
        """
        schedule = self.schedule
        schedule.advance(now)
        if self._plain:
            self._to_policy_mode()
        policy = self.policy
        size = len(message.body)
        if policy is not None:
            if policy.overflow != DROP_HEAD and self._over_limit(
                self._count + 1, self._bytes + size
            ):
                # x-overflow reject-publish(-dlx): the new message is refused
                # (rabbit_amqqueue_process:will_overflow), and nacked.
                if policy.overflow == REJECT_PUBLISH_DLX:
                    self._dead_letter(message, DropReason.MAXLEN)
                return False
            if policy.message_ttl is not None and (ttl is None or policy.message_ttl < ttl):
                ttl = policy.message_ttl
        seq = self._next_seq
        self._next_seq = seq + 1
        entry = QueueEntry(seq, message, delivery_count, None, READY, message_id)
        self._push_ready(entry, requeued=False)
        self._count += 1
        self._bytes += size
        if expires_at is not None:
            entry.expires_at = expires_at
            schedule.push(expires_at, _EntryExpiry(self, entry))
            if self._waiting:
                self._dispatch_policy()
        elif ttl == 0:
            # TTL 0: delivered now if a consumer can take it, else expired at once
            # (RabbitMQ).  If it comes back later it is expired by then.
            if self._waiting:
                self._dispatch_policy()
            if entry.state == READY:
                self._unready(entry)
                self.drop(entry, DropReason.EXPIRED)
            else:
                entry.expires_at = now
        else:
            if ttl is not None:
                entry.expires_at = deadline = now + ttl / 1000
                schedule.push(deadline, _EntryExpiry(self, entry))
            if self._waiting:
                self._dispatch_policy()
        self._enforce_max_length()
        return True

    def _over_limit(self, count: int, size: int) -> bool:
        policy = self.policy
        if policy is None:
            return False
        limit = policy.max_length
        if limit is not None and count > limit:
            return True
        limit = policy.max_length_bytes
        return limit is not None and size > limit

    def _enforce_max_length(self) -> None:
        """``x-overflow`` ``drop-head``: drop (dead-letter) heads while over the limits."""
        policy = self.policy
        if policy is None or policy.overflow != DROP_HEAD:
            return
        if policy.max_length is None and policy.max_length_bytes is None:
            return
        while self._over_limit(self._count, self._bytes) and self._count > len(self._held):
            entry = self._take_counted()
            if entry is None:
                break
            reason = DropReason.MAXLEN
            if entry.expires_at is not None and entry.expires_at <= self.schedule.now:
                reason = DropReason.EXPIRED
            self.drop(entry, reason)

    def _unready(self, entry: QueueEntry) -> None:
        """Take a ready entry out where it sits (lazily: it is marked gone)."""
        entry.state = GONE
        self._count -= 1
        self._bytes -= len(entry.message.body)
        self._gone += 1
        self._trim()

    def _trim(self) -> None:
        """Drop gone entries at the heads; compact when half the structures is gone."""
        by_priority = self._by_priority
        if by_priority is not None:
            while by_priority and by_priority[0][2].state != READY:
                heapq.heappop(by_priority)
                self._gone -= 1
            size = len(by_priority)
        else:
            requeued, ready = self._requeued, self._ready
            while requeued and requeued[0][1].state != READY:
                heapq.heappop(requeued)
                self._gone -= 1
            while ready and ready[0].state != READY:
                ready.popleft()
                self._gone -= 1
            size = len(requeued) + len(ready)
        if self._gone >= _COMPACT_GONE and 2 * self._gone > size:
            if by_priority is not None:
                kept = [item for item in by_priority if item[2].state == READY]
                heapq.heapify(kept)
                self._by_priority = kept
            else:
                self._requeued = [item for item in self._requeued if item[1].state == READY]
                heapq.heapify(self._requeued)
                self._ready = deque(e for e in self._ready if e.state == READY)
            self._gone = 0

    def _pop_policy(self) -> QueueEntry | None:
        now = self.schedule.now
        while True:
            entry = self._take_counted()
            if entry is None:
                return None
            expires_at = entry.expires_at
            if expires_at is not None and expires_at <= now:
                # Never delivered after its expiry, whatever the sweeper's timing.
                self.drop(entry, DropReason.EXPIRED)
                continue
            entry.state = OUT
            return entry

    def _dispatch_policy(self) -> None:
        waiting = self._waiting
        while waiting and self._count > len(self._held):
            consumer = waiting[0]
            if not consumer.has_credit():
                waiting.popleft()
                consumer.waiting = False
                continue
            entry = self._pop_policy()
            if entry is None:
                break
            waiting.rotate(-1)
            consumer.channel.deliver_entry(consumer, self, entry)

    def _requeue_policy(self, entries: Iterable[QueueEntry], retry: bool) -> None:
        policy = self.policy
        schedule = self.schedule
        now = schedule.now
        limit = policy.delivery_limit if policy is not None else None
        backoff = policy.retry_backoff if policy is not None and retry else None
        for entry in entries:
            # (An entry taken while the queue was still plain has state READY here.)
            if limit is not None and entry.delivery_count > limit:
                # A poison message: dead-lettered instead of looping (quorum queues).
                self.drop(entry, DropReason.DELIVERY_LIMIT)
                continue
            expires_at = entry.expires_at
            if expires_at is not None and expires_at <= now:
                self.drop(entry, DropReason.EXPIRED)
                continue
            self._count += 1
            self._bytes += len(entry.message.body)
            if backoff is not None:
                delay = backoff.delay_ms(entry.delivery_count)
                if delay > 0:
                    entry.state = HELD
                    self._held[entry] = None
                    schedule.push(now + delay / 1000, _HeldReturn(self, entry))
                    continue
            self._push_ready(entry, requeued=True)
        self._enforce_max_length()

    # -- deadlines (called by the schedule's tasks) ----------------------------------

    def expire_entry(self, entry: QueueEntry, now: float) -> None:
        """A message's TTL is up: drop it (dead-letter ``expired``) wherever it sits.

        Delivered entries are left alone: if they come back they are
        expired on the way in (:meth:`requeue`).
        """
        state = entry.state
        if state == READY:
            self._unready(entry)
        elif state == HELD:
            del self._held[entry]
            self._count -= 1
            self._bytes -= len(entry.message.body)
        else:
            return
        self.drop(entry, DropReason.EXPIRED)

    def release_held(self, entry: QueueEntry) -> None:
        """An ``x-retry-backoff`` hold-back is over: the entry is ready again at its place."""
        if entry.state != HELD or self.deleted:
            return
        del self._held[entry]
        self._push_ready(entry, requeued=True)
        if self._waiting:
            self._dispatch_policy()

    def touch(self, now: float) -> None:
        """Note a use of the queue (declare, ``basic.get``, last consumer gone) for ``x-expires``."""
        self._last_used = now
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        policy = self.policy
        if policy is None or not policy.expires or self._expiry_armed or self.deleted:
            return
        self._expiry_armed = True
        self.schedule.push(self._last_used + policy.expires / 1000, _QueueExpiry(self))

    def check_expiry(self, now: float) -> None:
        """``x-expires``: delete the queue if unused (no consumers, no get, no redeclare) long enough."""
        self._expiry_armed = False
        policy = self.policy
        if self.deleted or self._consumers or policy is None or not policy.expires:
            return
        if self._last_used + policy.expires / 1000 <= now:
            if self.host is not None:
                self.host.delete_queue(self)
            return
        self._arm_expiry()


def entry_deadline(queue: Queue, now: float, ttl: int | None) -> float | None:
    """The absolute expiry time of a message published at ``now`` into ``queue``.

    ``ttl`` is the message's own ``expiration`` (ms); the queue's
    ``x-message-ttl`` applies when shorter, as on enqueue.  None without a TTL.
    """
    policy = queue.policy
    if policy is not None and policy.message_ttl is not None and (
        ttl is None or policy.message_ttl < ttl
    ):
        ttl = policy.message_ttl
    return None if ttl is None else now + ttl / 1000


def stored_expiries(
    queues: Sequence[Queue], now: float, ttl: int | None
) -> list[float | None] | None:
    """Each stored queue's entry deadline for :meth:`Persistence.append`; None if none has one."""
    deadlines = [entry_deadline(q, now, ttl) for q in queues]
    return deadlines if any(d is not None for d in deadlines) else None


def _message_ttl(message: Message) -> int | None:
    """A recovered message's own ``expiration`` in ms (None without, or if unreadable)."""
    expiration = message.properties.expiration
    if expiration is None:
        return None
    try:
        return parse_expiration(expiration)
    except ChannelError:
        return None
