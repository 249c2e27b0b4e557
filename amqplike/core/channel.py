"""Channels: the per-channel state of a connection, and the port deliveries leave by.

A :class:`Channel` is what the server drives for each open AMQP channel.
It owns the consumers created on it, its delivery-tag counter, its unacked
deliveries and prefetch windows, and publisher-confirm sequence numbers.
Everything leaving the core for the client goes through its
:class:`ChannelSink`, synchronously, from inside the call that caused it.

Consumer ack timeouts: every unacked delivery records when it was made;
its timeout is its consumer's (``x-consumer-timeout``, else the queue's,
else the broker's default).  A channel with a timed consumer keeps one
check on the broker's schedule, due at its earliest possible deadline (the
oldest delivery's, or ``now`` plus the smallest timeout for deliveries not
yet made); when it finds a delivery overdue the channel is closed with 406
(its unacked messages are requeued) and the sink told through the optional
:meth:`ClosableChannelSink.channel_closed`.  A delivery costs one float and
no timer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from attrs import define, field

from amqplike.core.arguments import parse_consumer_timeout, parse_expiration
from amqplike.core.message import DropReason, GetResult, Message
from amqplike.core.persistence import ConfirmToken
from amqplike.core.queues import Consumer, Queue, QueueEntry, stored_expiries
from amqplike.core.schedule import Schedule
from amqplike.core.vhost import DIRECT_REPLY_TO, REPLY_TO_PREFIX, message_delay_ms, server_name
from amqplike.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    ChannelError,
    HardError,
)
from amqplike.properties import REPLY_TO_INDEX, BasicProperties, property_values

if TYPE_CHECKING:
    from amqplike.core.broker import Connection
    from amqplike.core.exchanges import Exchange
    from amqplike.core.vhost import VirtualHost


class ChannelSink(Protocol):
    """What the core calls to send to the client of one channel (the server implements it)."""

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        """Send ``basic.deliver`` with the message."""

    def returned(self, reply_code: int, reply_text: str, message: Message) -> None:
        """Send ``basic.return``: a mandatory message could not be routed."""

    def confirmed(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        """Send a publisher confirm: ``basic.ack`` (``ack``) or ``basic.nack``."""

    def consumer_cancelled(self, consumer_tag: str) -> None:
        """Send ``basic.cancel``: the server cancelled the consumer (its queue went away)."""


class ClosableChannelSink(ChannelSink, Protocol):
    """A sink that can also be told the core closed its channel (optional method).

    The core calls ``channel_closed`` when it closes a channel by itself (a
    consumer ack timeout), after closing it in the core (consumers cancelled,
    unacked deliveries requeued); the server sends ``channel.close`` with the
    code and text.  A sink without the method only sees the channel go quiet.
    """

    def channel_closed(self, reply_code: int, reply_text: str) -> None:
        """Send ``channel.close`` with this reply: the broker closed the channel."""


#: No deadline.
_NEVER: Final = math.inf


@define(eq=False, slots=True)
class _Unacked:
    """A delivery awaiting ack: the entry, its queue, the consumer (None for basic.get),
    and when it was made (for the ack timeout)."""

    entry: QueueEntry
    queue: Queue
    consumer: Consumer | None
    delivered_at: float = 0.0


class _AckTimeoutCheck:
    """Schedule task: check a channel's deliveries for an overdue ack (see
    :meth:`Channel.check_ack_timeout`); superseded by an earlier check."""

    __slots__ = ("at", "channel")

    def __init__(self, channel: Channel, at: float) -> None:
        self.channel = channel
        self.at = at

    def live(self) -> bool:
        channel = self.channel
        return channel.is_open and channel.ack_check_at == self.at

    def fire(self, now: float) -> None:
        self.channel.check_ack_timeout(now)


@define(eq=False, slots=True)
class Channel:
    """One open channel of a connection.

    Methods are named after the AMQP methods they implement and raise
    ``ChannelError`` (soft) or ``HardError`` with RabbitMQ's codes and texts.
    A closed channel refuses every method with ``HardError`` 504.
    """

    number: int
    connection: Connection
    sink: ChannelSink
    vhost: VirtualHost
    is_open: bool = True
    #: False after ``channel.flow(active=false)``: no deliveries to this channel's consumers.
    flow_active: bool = True
    confirm_mode: bool = False
    #: ``basic.qos(global=false)``: the window given to consumers created afterwards.
    prefetch_count: int = 0
    #: ``basic.qos(global=true)``: one window shared by all consumers of the channel.
    global_prefetch: int = 0
    #: Unacked deliveries made to consumers (``basic.get`` ones are not limited by qos).
    consumer_unacked: int = 0
    _next_delivery_tag: int = field(default=1, init=False)
    _publish_seq: int = field(default=0, init=False)
    #: Stored publishes awaiting their store write: sequence number -> ack (False: nack).
    _unstored: dict[int, bool] = field(factory=dict, init=False)
    _unacked: dict[int, _Unacked] = field(factory=dict, init=False)
    _consumers: dict[str, Consumer] = field(factory=dict, init=False)
    #: Direct reply-to: the tag of the reply consumer and the token naming it, or None.
    _reply_tag: str | None = field(default=None, init=False)
    _reply_token: str | None = field(default=None, init=False)
    #: When this channel's ack-timeout check is due (``inf`` when none is scheduled).
    ack_check_at: float = field(default=_NEVER, init=False)
    #: The smallest ack timeout (seconds) of this channel's consumers and gets so far.
    _min_timeout: float = field(default=_NEVER, init=False)
    _schedule: Schedule = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._schedule = self.vhost.schedule

    def __repr__(self) -> str:
        return f"<Channel {self.number} open={self.is_open}>"

    @property
    def consumers(self) -> Mapping[str, Consumer]:
        """This channel's consumers by tag."""
        return self._consumers

    @property
    def reply_consumer_tag(self) -> str | None:
        """The tag of this channel's direct reply-to consumer, None if it has none."""
        return self._reply_tag

    @property
    def unacked_count(self) -> int:
        """Deliveries (including ``basic.get`` ones) not yet settled."""
        return len(self._unacked)

    def _check_open(self) -> None:
        if not self.is_open:
            # AMQP classes 504 as a connection error: the client used a closed channel.
            raise HardError(CHANNEL_ERROR, f"channel {self.number} is closed")

    # -- exchanges, queues, bindings ------------------------------------------

    def exchange_declare(
        self,
        exchange: str,
        type: str = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """``exchange.declare`` (see :meth:`VirtualHost.exchange_declare` for the errors)."""
        self._check_open()
        self.vhost.exchange_declare(
            exchange, type, passive, durable, auto_delete, internal, arguments
        )

    def exchange_delete(self, exchange: str, if_unused: bool = False) -> None:
        """``exchange.delete``: 403 for system exchanges, 406 if ``if_unused`` and bound."""
        self._check_open()
        self.vhost.exchange_delete(exchange, if_unused)

    def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """``exchange.bind`` (RabbitMQ extension): route from ``source`` on to ``destination``.

        403 if either is the default exchange; 404 if either is missing.
        """
        self._check_open()
        vhost = self.vhost
        vhost.check_not_default(destination)
        vhost.check_not_default(source)
        src = vhost.get_exchange(source)
        dst = vhost.get_exchange(destination)
        vhost.bind(src, dst, routing_key, arguments)

    def exchange_unbind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """``exchange.unbind``: a missing binding is not an error; missing exchanges are 404."""
        self._check_open()
        vhost = self.vhost
        vhost.check_not_default(destination)
        vhost.check_not_default(source)
        src = vhost.get_exchange(source)
        dst = vhost.get_exchange(destination)
        vhost.unbind(src, dst, routing_key, arguments)

    def queue_declare(
        self,
        queue: str = "",
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> tuple[str, int, int]:
        """``queue.declare``: return ``(name, message_count, consumer_count)``.

        See :meth:`VirtualHost.queue_declare` for the errors.  The direct
        reply-to names are answered as RabbitMQ does: every declare of them is
        passive (the pseudo-queue cannot be created), ``amq.rabbitmq.reply-to``
        and the name of a live reply consumer give 0 messages and 1 consumer,
        any other ``amq.rabbitmq.reply-to…`` name 404.  A responder uses this
        to check that its requester is still there.
        """
        self._check_open()
        if queue.startswith(DIRECT_REPLY_TO):
            if queue != DIRECT_REPLY_TO and self.vhost.reply_channel(queue) is None:
                raise ChannelError(NOT_FOUND, f"no {self.vhost.describe('queue', queue)}")
            return queue, 0, 1
        q = self.vhost.queue_declare(
            self.connection, queue, passive, durable, exclusive, auto_delete, arguments
        )
        return q.name, q.message_count, q.consumer_count

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """``queue.bind``: 403 for the default exchange, 404 for a missing end, 405 if locked."""
        self._check_open()
        vhost = self.vhost
        vhost.check_not_default(exchange)
        source = vhost.get_exchange(exchange)
        vhost.bind(source, vhost.get_queue(queue, self.connection), routing_key, arguments)

    def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """``queue.unbind``: a missing binding is not an error; missing ends are 404."""
        self._check_open()
        vhost = self.vhost
        vhost.check_not_default(exchange)
        source = vhost.get_exchange(exchange)
        vhost.unbind(source, vhost.get_queue(queue, self.connection), routing_key, arguments)

    def queue_purge(self, queue: str) -> int:
        """``queue.purge``: drop ready messages (not unacked ones); return how many."""
        self._check_open()
        return self.vhost.purge_queue(self.vhost.get_queue(queue, self.connection))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> int:
        """``queue.delete``: return the ready message count (see :meth:`VirtualHost.queue_delete`)."""
        self._check_open()
        return self.vhost.queue_delete(self.connection, queue, if_unused, if_empty)

    # -- consuming -----------------------------------------------------------

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, global_: bool = False
    ) -> None:
        """``basic.qos``: set the prefetch window, RabbitMQ-style.

        ``global_=False`` sets the window of consumers created afterwards on
        this channel; ``global_=True`` one window shared by all its consumers.
        0 is unlimited.  A nonzero ``prefetch_size`` is refused with 540
        NOT_IMPLEMENTED, as RabbitMQ does.
        """
        self._check_open()
        if prefetch_size:
            raise HardError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({prefetch_size})")
        if global_:
            self.global_prefetch = prefetch_count
        else:
            self.prefetch_count = prefetch_count
        # A larger window may let waiting messages through now.
        self._wake(self._consumers.values())

    def basic_consume(
        self,
        queue: str,
        consumer_tag: str = "",
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
        *,
        dispatch: bool = True,
    ) -> str:
        """``basic.consume``: subscribe to a queue and return the consumer tag.

        An empty tag gets a server-generated ``amq.ctag-…`` one.  530 (hard)
        for a tag already used on this channel; 404/405 for the queue; 403 if
        the queue has an exclusive consumer, or consumers when ``exclusive``.
        Ready messages are delivered before this returns unless ``dispatch``
        is False, in which case the caller sends ``basic.consume-ok`` first and
        then calls :meth:`dispatch`.

        ``amq.rabbitmq.reply-to`` registers the channel's direct reply-to
        consumer instead (see :meth:`_consume_replies`).
        """
        self._check_open()
        if consumer_tag and (consumer_tag in self._consumers or consumer_tag == self._reply_tag):
            raise HardError(NOT_ALLOWED, f"attempt to reuse consumer tag '{consumer_tag}'")
        if queue == DIRECT_REPLY_TO:
            return self._consume_replies(consumer_tag, no_ack)
        q = self.vhost.get_queue(queue, self.connection)
        if q.exclusive_consumer is not None or (exclusive and q.consumer_count):
            raise ChannelError(
                ACCESS_REFUSED, f"{self.vhost.describe('queue', queue)} in exclusive use"
            )
        timeout_ms = (
            parse_consumer_timeout(arguments, self.vhost.describe("queue", queue))
            if arguments
            else None
        )
        tag = self._new_tag(consumer_tag)
        consumer = Consumer(
            tag=tag,
            queue=q,
            channel=self,
            no_ack=no_ack,
            exclusive=exclusive,
            prefetch_count=self.prefetch_count,
            arguments=dict(arguments or {}),
            timeout=self._ack_timeout(q, timeout_ms),
        )
        self._consumers[tag] = consumer
        if not no_ack:
            self._watch_ack_timeout(consumer.timeout)
        q.add_consumer(consumer)
        if dispatch:
            q.dispatch()
        return tag

    def _ack_timeout(self, queue: Queue, consumer_timeout_ms: int | None = None) -> float:
        """The ack timeout in seconds of deliveries from ``queue`` (0 for none).

        The consumer's ``x-consumer-timeout`` argument, else the queue's, else
        the broker's default; 0 ms disables it.
        """
        if consumer_timeout_ms is None and queue.policy is not None:
            consumer_timeout_ms = queue.policy.consumer_timeout
        if consumer_timeout_ms is None:
            return self.vhost.consumer_timeout
        return consumer_timeout_ms / 1000

    def _new_tag(self, consumer_tag: str) -> str:
        """``consumer_tag``, or a fresh ``amq.ctag-…`` one unused on this channel if empty."""
        tag = consumer_tag
        while not tag or tag in self._consumers or tag == self._reply_tag:
            tag = server_name("amq.ctag-")
        return tag

    def _consume_replies(self, consumer_tag: str, no_ack: bool) -> str:
        """``basic.consume`` of ``amq.rabbitmq.reply-to``: make this the channel's reply consumer.

        No queue is involved: replies published to the name the broker puts in
        this channel's requests are delivered straight to it (:meth:`deliver_reply`).
        406 unless ``no_ack`` (nothing could take a rejected reply back) and
        406 for a second one on the channel, with RabbitMQ's texts; ``exclusive``
        and ``arguments`` are ignored, as RabbitMQ does.
        """
        if not no_ack:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")
        if self._reply_tag is not None:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer already set")
        tag = self._new_tag(consumer_tag)
        self._reply_token = self.vhost.add_reply_channel(self)
        self._reply_tag = tag
        return tag

    def _cancel_replies(self) -> None:
        """Forget the reply consumer: replies to its token become unroutable."""
        if self._reply_token is not None:
            self.vhost.reply_channels.pop(self._reply_token, None)
        self._reply_tag = self._reply_token = None

    def deliver_reply(self, message: Message) -> None:
        """Hand a direct reply to this channel's reply consumer (called by the replier's channel).

        A no-ack delivery with a fresh tag, never redelivered.  It is made even
        while ``channel.flow`` has paused the channel: a reply has no queue to
        wait in, and RabbitMQ's channel does not hold replies back either.
        """
        tag = self._reply_tag
        assert tag is not None, "only a registered reply channel gets replies"
        delivery_tag = self._next_delivery_tag
        self._next_delivery_tag = delivery_tag + 1
        self.sink.deliver(tag, delivery_tag, False, message)

    def dispatch(self) -> None:
        """Deliver what this channel's consumers can take now (after a deferred consume)."""
        self._check_open()
        self._wake(self._consumers.values())

    def basic_cancel(self, consumer_tag: str) -> None:
        """``basic.cancel``: an unknown tag is not an error (RabbitMQ).

        Unacked deliveries of the consumer stay unacked on the channel.  An
        auto-delete queue is deleted when its last consumer goes.  Cancelling
        the direct reply-to consumer unregisters it.
        """
        self._check_open()
        consumer = self._consumers.pop(consumer_tag, None)
        if consumer is not None:
            self._cancel(consumer)
        elif consumer_tag == self._reply_tag:
            self._cancel_replies()

    def _cancel(self, consumer: Consumer) -> None:
        q = consumer.queue
        q.remove_consumer(consumer)
        if q.auto_delete and q.had_consumer and not q.consumer_count:
            self.vhost.delete_queue(q)

    def consumer_removed(self, consumer: Consumer) -> None:
        """Called by the virtual host when a consumer's queue is deleted under it."""
        if self._consumers.get(consumer.tag) is consumer:
            del self._consumers[consumer.tag]
            if self.is_open:
                self.sink.consumer_cancelled(consumer.tag)

    def deliver_entry(self, consumer: Consumer, queue: Queue, entry: QueueEntry) -> None:
        """Hand a queue entry to a consumer of this channel (called by :meth:`Queue.dispatch`)."""
        tag = self._next_delivery_tag
        self._next_delivery_tag = tag + 1
        if entry.message_id:
            count = queue.record_delivery(entry)
        else:
            count = entry.delivery_count
            entry.delivery_count = count + 1
        message = entry.message
        if count:
            # Redelivered: the count goes in x-delivery-count (quorum queues), on a copy.
            message = message.with_delivery_count(count)
        if consumer.no_ack:
            # Auto-ack: settled as it is sent (AMQP 0-9-1, basic.consume no-ack).
            queue.ack(entry)
        else:
            self._unacked[tag] = _Unacked(entry, queue, consumer, self._schedule.now)
            consumer.unacked += 1
            self.consumer_unacked += 1
        self.sink.deliver(consumer.tag, tag, count > 0, message)

    def basic_get(self, queue: str, no_ack: bool = False) -> GetResult | None:
        """``basic.get``: take one message, or None when the queue is empty (``get-empty``).

        Not limited by prefetch, as in RabbitMQ.
        """
        self._check_open()
        q = self.vhost.get_queue(queue, self.connection)
        now = self._schedule.now
        if q.policy is not None and q.policy.expires:
            q.touch(now)  # a get is a use (x-expires)
        entry = q.pop()
        if entry is None:
            return None
        tag = self._next_delivery_tag
        self._next_delivery_tag = tag + 1
        count = q.record_delivery(entry)
        message = entry.message if not count else entry.message.with_delivery_count(count)
        if no_ack:
            q.ack(entry)
        else:
            # The channel's ack timeout applies to gets too (RabbitMQ).
            self._unacked[tag] = _Unacked(entry, q, None, now)
            self._watch_ack_timeout(self._ack_timeout(q))
        return GetResult(tag, count > 0, message, q.message_count)

    # -- settling ------------------------------------------------------------

    def _take(self, delivery_tag: int, multiple: bool) -> list[_Unacked]:
        """Remove and return the deliveries an ack/nack names, oldest first.

        ``multiple`` means every delivery up to and including the tag, and
        tag 0 with ``multiple`` means all (AMQP 0-9-1, basic.ack).  As in
        RabbitMQ, the tag itself must be outstanding, else 406.
        """
        unacked = self._unacked
        if multiple and delivery_tag == 0:
            records = list(unacked.values())
            unacked.clear()
            return records
        record = unacked.pop(delivery_tag, None)
        if record is None:
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}")
        if not multiple:
            return [record]
        # The dict is in tag order (tags only grow), so older ones come first.
        older = []
        for tag in unacked:
            if tag > delivery_tag:
                break
            older.append(tag)
        records = [unacked.pop(tag) for tag in older]
        records.append(record)
        return records

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """``basic.ack``: 406 for an unknown tag; frees prefetch credit."""
        self._check_open()
        if not multiple:
            record = self._unacked.pop(delivery_tag, None)
            if record is None:
                raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}")
            # The common case, kept free of the bookkeeping of _settle.
            if not record.queue.deleted:
                record.queue.ack(record.entry)
            consumer = record.consumer
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
                if self.global_prefetch:
                    self._wake(self._consumers.values())
                elif not consumer.cancelled:
                    consumer.queue.wake(consumer)
                    consumer.queue.dispatch()
            return
        self._settle(self._take(delivery_tag, multiple), ack=True, requeue=False)

    def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        """``basic.nack`` (RabbitMQ extension): requeue or discard; 406 for an unknown tag."""
        self._check_open()
        self._settle(self._take(delivery_tag, multiple), ack=False, requeue=requeue, retry=True)

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        """``basic.reject``: requeue or discard one delivery; 406 for an unknown tag."""
        self._check_open()
        self._settle(self._take(delivery_tag, False), ack=False, requeue=requeue, retry=True)

    def basic_recover(self, requeue: bool = True) -> None:
        """``basic.recover``: requeue every unacked delivery of the channel.

        ``requeue=False`` (redeliver to the same consumer) is 540
        NOT_IMPLEMENTED, as in RabbitMQ.
        """
        self._check_open()
        if not requeue:
            raise HardError(NOT_IMPLEMENTED, "requeue=false")
        self._settle(self._take(0, True), ack=False, requeue=True)

    def _settle(
        self, records: list[_Unacked], *, ack: bool, requeue: bool, retry: bool = False
    ) -> None:
        """Settle deliveries, then let the consumers they freed take more.

        ``retry`` marks a client's nack/reject, which ``x-retry-backoff`` holds back.
        """
        freed: dict[Consumer, None] = {}
        requeued: dict[Queue, list[QueueEntry]] = {}
        for record in records:
            consumer = record.consumer
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1
                freed[consumer] = None
            q = record.queue
            if q.deleted:
                # Its queue is gone; settling it is a no-op, as in RabbitMQ.
                continue
            if ack:
                q.ack(record.entry)
            elif requeue:
                requeued.setdefault(q, []).append(record.entry)
            else:
                q.drop(record.entry, DropReason.REJECTED)
        for q, entries in requeued.items():
            q.requeue(entries, retry=retry)
        if self.global_prefetch and freed:
            freed = dict.fromkeys(self._consumers.values())
        self._wake(freed, requeued)

    def _wake(self, consumers: Iterable[Consumer], queues: Iterable[Queue] = ()) -> None:
        """Put consumers back in their queues' dispatch rotation and dispatch those queues."""
        touched = dict.fromkeys(queues)
        for consumer in consumers:
            if not consumer.cancelled:
                consumer.queue.wake(consumer)
                touched[consumer.queue] = None
        for q in touched:
            q.dispatch()

    # -- publishing ------------------------------------------------------------

    def confirm_select(self) -> None:
        """``confirm.select``: from now on every publish is confirmed, numbered from 1."""
        self._check_open()
        self.confirm_mode = True

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        body: bytes,
        *,
        mandatory: bool = False,
        now: float = 0.0,
    ) -> None:
        """``basic.publish``: route the message to every matching queue once.

        404 for a missing exchange, 403 for an internal one, 406 for an
        ``expiration`` that is not a number of milliseconds.  An unroutable
        mandatory message comes back through ``sink.returned`` (312
        NO_ROUTE); in confirm mode the confirm follows it.  A queue that
        refuses the message (``x-overflow`` ``reject-publish``) makes the
        confirm a nack.  An ``x-delayed-message`` exchange holds a message
        with a positive ``x-delay`` header (no return: it is routed later).

        Direct reply-to: a ``reply_to`` of ``amq.rabbitmq.reply-to`` is
        rewritten to name this channel's reply consumer (406 if it has none),
        and a message published to the default exchange with such a name as
        routing key goes straight to that consumer; if it is gone the message
        is unroutable.
        """
        self._check_open()
        vhost = self.vhost
        x = vhost.exchanges.get(exchange)
        if x is None:
            x = vhost.get_exchange(exchange)
        if x.internal:
            raise ChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal {vhost.describe('exchange', exchange)}",
            )
        if properties.reply_to == DIRECT_REPLY_TO:
            properties = self._reply_to_properties(properties)
        message = Message(exchange, routing_key, properties, body)
        ttl = None
        if properties.expiration is not None or x.delayed:
            # Off the plain path: a message with its own TTL, a delayed exchange.
            if properties.expiration is not None:
                ttl = parse_expiration(properties.expiration)
            delay = message_delay_ms(message) if x.delayed else 0
            if delay:
                self._publish_delayed(x, message, now + delay / 1000)
                return
        queues = vhost.route(x, message)
        accepted = True
        if queues:
            persistence = vhost.persistence
            if properties.delivery_mode == 2 and persistence.enabled:
                self._publish_stored(queues, message, now, ttl)
                return
            for q in queues:
                if not q.enqueue(message, now, ttl):
                    accepted = False
        elif exchange == "" and routing_key.startswith(REPLY_TO_PREFIX):
            # Checked only once the default exchange found no queue: no queue
            # can have such a name (clients may not pick amq. names), so
            # publishes that reach a queue pay nothing for direct reply-to.
            target = vhost.reply_channel(routing_key)
            if target is not None:
                target.deliver_reply(message)
            elif mandatory:
                self.sink.returned(NO_ROUTE, "NO_ROUTE", message)
        elif mandatory:
            self.sink.returned(NO_ROUTE, "NO_ROUTE", message)
        if self.confirm_mode:
            self._publish_seq += 1
            self._confirm(self._publish_seq, message, queues, accepted)

    def _reply_to_properties(self, properties: BasicProperties) -> BasicProperties:
        """``properties`` with ``reply_to`` naming this channel's reply consumer.

        406 "fast reply consumer does not exist" (RabbitMQ's text) when the
        channel has none: the reply could never reach the requester.
        """
        token = self._reply_token
        if token is None:
            raise ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist")
        # Built from the value tuple: evolve() costs twice as much, once per request.
        values = list(property_values(properties))
        values[REPLY_TO_INDEX] = REPLY_TO_PREFIX + token
        return BasicProperties(*values)

    def _confirm(
        self, seq: int, message: Message, queues: Iterable[Queue], ack: bool = True
    ) -> None:
        """Confirm publish number ``seq`` now (nothing of it waits for the store).

        ``ack`` is False when a queue refused the message (``reject-publish``):
        the publisher gets ``basic.nack``.
        """
        self.sink.confirmed(seq, False, ack)

    def _publish_stored(
        self, queues: Iterable[Queue], message: Message, now: float, ttl: int | None
    ) -> None:
        """Publish a persistent message with a store: append it, then enqueue it.

        It is appended once for all its durable (non-exclusive) queues, before
        any entry exists, so the deliveries and acks that enqueueing may cause
        reach the store after it.  Its confirm waits for the store (see
        :meth:`stored`) unless no durable queue took it.  While the store
        refuses writes (disk alarm or disk full) such a publish is refused
        whole: not enqueued, and nacked in confirm mode.
        """
        vhost = self.vhost
        persistence = vhost.persistence
        seq = 0
        if self.confirm_mode:
            self._publish_seq = seq = self._publish_seq + 1
        stored = [q for q in queues if q.durable and q.exclusive_owner is None]
        names = [q.name for q in stored]
        if names and not persistence.accepting:
            if seq:
                self.sink.confirmed(seq, False, False)
            return
        message_id = 0
        if names:
            token = ConfirmToken(self, seq) if seq else None
            message_id = persistence.append(
                vhost.name, names, message, token, stored_expiries(stored, now, ttl)
            )
        accepted = True
        for q in queues:
            stored_id = message_id if q.durable and q.exclusive_owner is None else 0
            if not q.enqueue(message, now, ttl, stored_id):
                accepted = False
                if stored_id:
                    persistence.remove(vhost.name, q.name, stored_id)
        if seq:
            if message_id:
                self._unstored[seq] = accepted
            else:
                self.sink.confirmed(seq, False, accepted)

    def _publish_delayed(self, exchange: Exchange, message: Message, due: float) -> None:
        """Hold a message on a delayed exchange; with a store, its confirm waits for the write."""
        vhost = self.vhost
        seq = 0
        if self.confirm_mode:
            self._publish_seq = seq = self._publish_seq + 1
        persistence = vhost.persistence
        stored = (
            exchange.durable and message.properties.delivery_mode == 2 and persistence.enabled
        )
        if stored and not persistence.accepting:
            if seq:
                self.sink.confirmed(seq, False, False)
            return
        token = ConfirmToken(self, seq) if stored and seq else None
        key = vhost.delay_message(exchange, message, due, token=token)
        if seq:
            if token is not None and vhost.delayed[key].message_id:
                self._unstored[seq] = True
            else:
                self.sink.confirmed(seq, False, True)

    def stored(self, seq: int, ok: bool) -> None:
        """The store wrote (``ok``) or failed to write publish ``seq``: confirm it now.

        Called by the integration through
        :func:`~amqplike.core.persistence.settle_stored`.  A publish a queue
        refused is nacked either way; a closed channel confirms nothing.
        """
        ack = self._unstored.pop(seq, None)
        if ack is None or not self.is_open:
            return
        self.sink.confirmed(seq, False, ack and ok)

    # -- flow and close --------------------------------------------------------

    def flow(self, active: bool) -> bool:
        """``channel.flow``: pause (False) or resume (True) deliveries; return ``active``."""
        self._check_open()
        self.flow_active = active
        if active:
            self._wake(self._consumers.values())
        return active

    # -- consumer ack timeout ------------------------------------------------------

    def _watch_ack_timeout(self, timeout: float) -> None:
        """Make sure a check runs by the first deadline a delivery with ``timeout`` can have."""
        if not timeout:
            return
        if timeout < self._min_timeout:
            self._min_timeout = timeout
        self._arm_ack_check(self._schedule.now + timeout)

    def _arm_ack_check(self, at: float) -> None:
        if at < self.ack_check_at:
            self.ack_check_at = at
            self._schedule.push(at, _AckTimeoutCheck(self, at))

    def _record_timeout(self, record: _Unacked) -> float:
        consumer = record.consumer
        return consumer.timeout if consumer is not None else self._ack_timeout(record.queue)

    def check_ack_timeout(self, now: float) -> None:
        """Close the channel (406) if a delivery is overdue, else re-arm for the next deadline.

        Called from the broker's schedule; one pass over this channel's
        unacked deliveries, once per earliest deadline (at most every
        smallest-timeout of its consumers).
        """
        self.ack_check_at = _NEVER
        if not self.is_open:
            return
        earliest = now + self._min_timeout
        for record in self._unacked.values():
            timeout = self._record_timeout(record)
            if not timeout:
                continue
            deadline = record.delivered_at + timeout
            if deadline <= now:
                self._ack_timed_out(timeout)
                return
            if deadline < earliest:
                earliest = deadline
        if earliest != _NEVER:
            self._arm_ack_check(earliest)

    def _ack_timed_out(self, timeout: float) -> None:
        text = (
            f"delivery acknowledgement on channel {self.number} timed out. Timeout value"
            f" used: {round(timeout * 1000)} ms. This timeout value can be configured,"
            " see consumers doc guide to learn more"
        )
        self.fail(ChannelError(PRECONDITION_FAILED, text))

    def fail(self, error: ChannelError) -> None:
        """Close the channel from the broker's side with ``error`` (a soft error).

        The channel is closed in the core first (its consumers cancelled, its
        unacked deliveries requeued), then the sink is told with
        ``channel_closed`` if it has that method (:class:`ClosableChannelSink`).
        """
        if not self.is_open:
            return
        self.close()
        notify = getattr(self.sink, "channel_closed", None)
        if notify is not None:
            notify(error.reply_code, error.reply_text)

    def close(self) -> None:
        """Close the channel: cancel its consumers, requeue its unacked deliveries.

        Requeued messages come back with ``redelivered`` set and in their
        original order (AMQP 0-9-1, 1.8.3.13 / 4.7).  Idempotent; never raises.
        """
        if not self.is_open:
            return
        self.is_open = False
        self._unstored.clear()
        self._cancel_replies()
        consumers = list(self._consumers.values())
        self._consumers.clear()
        for consumer in consumers:
            self._cancel(consumer)
        records = list(self._unacked.values())
        self._unacked.clear()
        self._settle(records, ack=False, requeue=True)
        if self.connection.channels.get(self.number) is self:
            del self.connection.channels[self.number]
