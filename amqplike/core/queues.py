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

Two methods are the single exits of a message, for the store and the
dead-letter service to hook later: :meth:`Queue.ack` (consumed) and
:meth:`Queue.drop` (let go unconsumed, with a :class:`DropReason`).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from attrs import define, field

from amqplike.core.message import DropReason, Message

if TYPE_CHECKING:
    from amqplike.core.broker import Connection
    from amqplike.core.channel import Channel
    from amqplike.core.exchanges import Binding, Exchange


@define(eq=False, slots=True)
class QueueEntry:
    """One message in one queue: its place (``seq``) and delivery history.

    ``delivery_count`` counts deliveries so far; a message delivered before is
    redelivered (``basic.deliver`` ``redelivered`` flag), and the count is what
    ``x-delivery-count`` and poison-message limits will read.
    """

    seq: int
    message: Message
    delivery_count: int = 0


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


@define(eq=False, slots=True)
class Queue:
    """A queue of one virtual host: its flags, stored entries and consumers."""

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
    _ready: deque[QueueEntry] = field(factory=deque, init=False)
    _requeued: list[tuple[int, QueueEntry]] = field(factory=list, init=False)
    _next_seq: int = field(default=0, init=False)
    _consumers: dict[Consumer, None] = field(factory=dict, init=False)
    _waiting: deque[Consumer] = field(factory=deque, init=False)

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} messages={self.message_count}>"

    @property
    def exclusive(self) -> bool:
        """True for a queue owned by one connection."""
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        """Ready messages (delivered but unacked ones are not counted, as in AMQP)."""
        return len(self._ready) + len(self._requeued)

    @property
    def consumer_count(self) -> int:
        """Active consumers."""
        return len(self._consumers)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The active consumers, oldest first."""
        return tuple(self._consumers)

    def enqueue(self, message: Message, now: float) -> None:
        """Append a message and hand it to a consumer if one has credit.

        ``now`` is the publish time, kept in the signature for message TTL.
        """
        seq = self._next_seq
        self._next_seq = seq + 1
        self._ready.append(QueueEntry(seq, message))
        if self._waiting:
            self.dispatch()

    def pop(self) -> QueueEntry | None:
        """Take the head entry (requeued ones first, oldest first), or None."""
        if self._requeued:
            return heapq.heappop(self._requeued)[1]
        if self._ready:
            return self._ready.popleft()
        return None

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Put delivered entries back at their original place; call :meth:`dispatch` after.

        Entries of a deleted queue have nowhere to go and are forgotten.
        """
        if self.deleted:
            return
        requeued = self._requeued
        for entry in entries:
            heapq.heappush(requeued, (entry.seq, entry))

    def ack(self, entry: QueueEntry) -> None:
        """The one place a message leaves the queue consumed (ack or auto-ack).

        Nothing to do in memory; the durable store will remove persistent
        messages here.
        """

    def drop(self, entry: QueueEntry, reason: DropReason) -> None:
        """The one place a message leaves the queue unconsumed (reject, later TTL/max-length).

        Dead-lettering (``x-dead-letter-exchange``) will hook here.
        """

    def purge(self) -> int:
        """Remove the ready messages (not those delivered and unacked); return how many."""
        count = self.message_count
        self._ready.clear()
        self._requeued.clear()
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

    def wake(self, consumer: Consumer) -> None:
        """Note that a consumer may have credit again; call :meth:`dispatch` after."""
        if not consumer.waiting and not consumer.cancelled:
            consumer.waiting = True
            self._waiting.append(consumer)

    def dispatch(self) -> None:
        """Deliver ready messages round-robin to consumers while any has credit."""
        waiting = self._waiting
        while waiting and (self._requeued or self._ready):
            consumer = waiting[0]
            if not consumer.has_credit():
                waiting.popleft()
                consumer.waiting = False
                continue
            entry = self.pop()
            assert entry is not None
            # Round-robin (AMQP 0-9-1, 3.1.3.4): the next message goes to the next consumer.
            waiting.rotate(-1)
            consumer.channel.deliver_entry(consumer, self, entry)
