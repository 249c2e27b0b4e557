"""A virtual host: its exchanges, queues and bindings, and routing between them.

The checks and error texts follow RabbitMQ's ``rabbit_channel`` so a user
sees the messages they know.  Channels call in here with their connection,
which is what exclusive-queue checks need; services (management, expiry)
can use the same methods.

The virtual host also republishes what the core publishes by itself:
dead-lettered messages (:meth:`VirtualHost.dead_letter`) and delayed
messages of ``x-delayed-message`` exchanges when they fall due
(:meth:`VirtualHost.delay_message` / :meth:`VirtualHost.release_delayed`,
the one entry and the one exit of a held delayed message, where persistent
ones held by a durable exchange are written to and deleted from the store).

It tells its :class:`~amqplike.core.persistence.Persistence` (none by
default) about every change to durable topology, as RabbitMQ defines it:
durable exchanges, durable non-exclusive queues, and bindings whose source
and destination are both durable.  The ``restore_*`` methods rebuild that
topology from a store at start-up, without the checks a client's declare
goes through (the names were checked when first declared).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from attrs import define, field, frozen

from amqplike.core.arguments import QueuePolicy, parse_expiration, parse_queue_arguments
from amqplike.core.deadletter import dead_letter_message, is_cycle
from amqplike.core.exchanges import Binding, Exchange
from amqplike.core.message import DropReason, Message
from amqplike.core.persistence import NO_PERSISTENCE, Persistence
from amqplike.core.queues import Queue, stored_expiries
from amqplike.core.routing import ROUTER_TYPES, freeze_arguments
from amqplike.core.schedule import Schedule
from amqplike.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
    HardError,
)

if TYPE_CHECKING:
    from amqplike.core.broker import Connection
    from amqplike.core.channel import Channel

#: The exchanges every virtual host has (RabbitMQ declares them durable).
PREDEFINED_EXCHANGES: Final = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)

_RESERVED_PREFIX: Final = "amq."

#: RabbitMQ's direct reply-to pseudo-queue (https://www.rabbitmq.com/docs/direct-reply-to):
#: consumed from with ``no_ack`` and named in a request's ``reply_to``; never a real queue.
DIRECT_REPLY_TO: Final = "amq.rabbitmq.reply-to"
#: What the broker puts before a reply consumer's token in the rewritten ``reply_to``;
#: a default-exchange publish with a routing key so prefixed goes to that consumer.
REPLY_TO_PREFIX: Final = DIRECT_REPLY_TO + "."

_NO_QUEUES: Final[tuple[()]] = ()

#: The delayed-message exchange type (RabbitMQ's rabbitmq_delayed_message_exchange plugin).
DELAYED_EXCHANGE_TYPE: Final = "x-delayed-message"
#: The header giving a message's delay in milliseconds on such an exchange.
X_DELAY: Final = "x-delay"
#: RabbitMQ's default consumer (delivery acknowledgement) timeout: 30 minutes.
DEFAULT_CONSUMER_TIMEOUT_SECONDS: Final = 1800.0


def message_delay_ms(message: Message) -> int:
    """The ``x-delay`` header of a message as a delay in ms; 0 (no delay) unless a positive int."""
    headers = message.properties.headers
    if not headers:
        return 0
    delay = headers.get(X_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay <= 0:
        return 0
    return delay


@frozen(slots=True)
class DelayedMessage:
    """A message held by an ``x-delayed-message`` exchange until ``due`` (seconds).

    ``message_id`` is its id in the durable store, 0 when not stored.
    """

    exchange: Exchange
    message: Message
    due: float
    message_id: int = 0


class _DelayedRelease:
    """Schedule task: a delayed message is due (see :meth:`VirtualHost.release_delayed`)."""

    __slots__ = ("key", "vhost")

    def __init__(self, vhost: VirtualHost, key: int) -> None:
        self.vhost = vhost
        self.key = key

    def live(self) -> bool:
        return self.key in self.vhost.delayed

    def fire(self, now: float) -> None:
        self.vhost.release_delayed(self.key, now)


def server_name(prefix: str) -> str:
    """A fresh unguessable name, as RabbitMQ's ``amq.gen-``/``amq.ctag-`` names."""
    return prefix + secrets.token_urlsafe(16)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return f"'{value}'"


def _show_argument(arguments: Mapping[str, Any], key: str) -> str:
    if key not in arguments:
        return "none"
    return f"the value {_show(arguments[key])}"


@define(eq=False, slots=True)
class VirtualHost:
    """One virtual host: a namespace of exchanges and queues."""

    name: str
    #: The broker's deadline heap; its ``now`` is the core's current time.
    schedule: Schedule = field(factory=Schedule)
    #: Ack timeout (seconds) of deliveries whose queue and consumer set none; 0 for none.
    consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT_SECONDS
    #: Where durable state goes (the broker sets it; nothing is stored by default).
    persistence: Persistence = NO_PERSISTENCE
    exchanges: dict[str, Exchange] = field(factory=dict, init=False)
    queues: dict[str, Queue] = field(factory=dict, init=False)
    #: Direct reply-to: each channel with a reply consumer, by its unguessable token.
    reply_channels: dict[str, Channel] = field(factory=dict, init=False)
    #: Messages held by ``x-delayed-message`` exchanges, by a key in arrival order.
    delayed: dict[int, DelayedMessage] = field(factory=dict, init=False)
    _delay_seq: int = field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._create_exchange("", "direct", durable=True)
        for name, type_ in PREDEFINED_EXCHANGES:
            self._create_exchange(name, type_, durable=True)

    def __repr__(self) -> str:
        return f"<VirtualHost {self.name!r}>"

    # -- names and lookups -------------------------------------------------

    def describe(self, kind: str, name: str) -> str:
        """RabbitMQ's resource text: ``queue 'q' in vhost '/'``."""
        return f"{kind} '{name}' in vhost '{self.name}'"

    def get_exchange(self, name: str) -> Exchange:
        """The named exchange, or ``ChannelError`` 404."""
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no {self.describe('exchange', name)}")
        return exchange

    def get_queue(self, name: str, connection: Connection | None) -> Queue:
        """The named queue usable by ``connection``: 404 if missing, 405 if another's exclusive."""
        queue = self.queues.get(name)
        if queue is None:
            raise ChannelError(NOT_FOUND, f"no {self.describe('queue', name)}")
        self._check_exclusive(queue, connection)
        return queue

    def _check_exclusive(self, queue: Queue, owner: Connection | None) -> None:
        # RabbitMQ's check_exclusive_access: an exclusive queue is usable only
        # by its own connection; on declare the exclusive flag must match too.
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            self._locked(queue)

    def _locked(self, queue: Queue) -> None:
        raise ChannelError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked {self.describe('queue', queue.name)}."
            " It could be originally declared on another connection or the exclusive"
            " property value does not match that of the original declaration.",
        )

    @staticmethod
    def check_not_default(name: str) -> None:
        """403 for the default exchange, which cannot be declared, deleted or bound."""
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")

    def _check_name(self, kind: str, name: str) -> None:
        if name.startswith(_RESERVED_PREFIX):
            raise ChannelError(
                ACCESS_REFUSED, f"{kind} name '{name}' contains reserved prefix 'amq.*'"
            )

    def _check_equivalent(
        self, kind: str, name: str, field_name: str, received: Any, current: Any
    ) -> None:
        if received != current:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg '{field_name}' for {self.describe(kind, name)}:"
                f" received {_show(received)} but current is {_show(current)}",
            )

    def _check_arguments(
        self, kind: str, name: str, received: Mapping[str, Any], current: Mapping[str, Any]
    ) -> None:
        if received == current:
            return
        for key in sorted(set(received) | set(current)):
            if received.get(key, _NO_QUEUES) != current.get(key, _NO_QUEUES):
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{key}' for {self.describe(kind, name)}:"
                    f" received {_show_argument(received, key)}"
                    f" but current is {_show_argument(current, key)}",
                )

    # -- direct reply-to -----------------------------------------------------

    def add_reply_channel(self, channel: Channel) -> str:
        """Register ``channel``'s reply consumer; return its token.

        The token is the only way to reach the channel, so it is random
        (not derived from the channel, unlike RabbitMQ's encoded pid) and
        another client cannot guess a live one.
        """
        token = secrets.token_urlsafe(16)
        while token in self.reply_channels:
            token = secrets.token_urlsafe(16)
        self.reply_channels[token] = channel
        return token

    def reply_channel(self, name: str) -> Channel | None:
        """The channel a ``amq.rabbitmq.reply-to.<token>`` name reaches, or None if gone."""
        if not name.startswith(REPLY_TO_PREFIX):
            return None
        return self.reply_channels.get(name[len(REPLY_TO_PREFIX) :])

    # -- exchanges -----------------------------------------------------------

    def _create_exchange(
        self,
        name: str,
        type_: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Exchange:
        args = dict(arguments or {})
        delayed = type_ == DELAYED_EXCHANGE_TYPE
        exchange = Exchange(
            name=name,
            type=type_,
            router=ROUTER_TYPES[args["x-delayed-type"] if delayed else type_](),
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=args,
            delayed=delayed,
        )
        self.exchanges[name] = exchange
        return exchange

    def exchange_declare(
        self,
        name: str,
        type: str = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Exchange:
        """``exchange.declare``: create the exchange or check that it is equivalent.

        403 for the default exchange or a new ``amq.`` name; 404 for a passive
        declare of a missing one; 503 (hard) for an unknown type; 406 for a
        redeclare with different type, flags or arguments.

        Type ``x-delayed-message`` needs an ``x-delayed-type`` argument naming
        the routing behaviour (406 with the plugin's text otherwise).
        """
        self.check_not_default(name)
        if passive:
            return self.get_exchange(name)
        args = dict(arguments or {})
        if type == DELAYED_EXCHANGE_TYPE:
            delayed_type = args.get("x-delayed-type")
            if not isinstance(delayed_type, str) or delayed_type not in ROUTER_TYPES:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    "Invalid argument, 'x-delayed-type' must be an existing exchange type",
                )
        elif type not in ROUTER_TYPES:
            raise HardError(COMMAND_INVALID, f"unknown exchange type '{type}'")
        exchange = self.exchanges.get(name)
        if exchange is None:
            self._check_name("exchange", name)
            exchange = self._create_exchange(
                name,
                type,
                durable=durable,
                auto_delete=auto_delete,
                internal=internal,
                arguments=args,
            )
            if durable:
                self.persistence.exchange_declared(self.name, exchange)
            return exchange
        check = self._check_equivalent
        check("exchange", name, "type", type, exchange.type)
        check("exchange", name, "durable", durable, exchange.durable)
        check("exchange", name, "auto_delete", auto_delete, exchange.auto_delete)
        check("exchange", name, "internal", internal, exchange.internal)
        self._check_arguments("exchange", name, args, exchange.arguments)
        return exchange

    def exchange_delete(self, name: str, if_unused: bool = False) -> None:
        """``exchange.delete``: 403 for the default and ``amq.*`` exchanges, 406 if in use.

        Deleting a missing exchange succeeds, as in RabbitMQ 3.x.
        """
        self.check_not_default(name)
        if name.startswith(_RESERVED_PREFIX):
            raise ChannelError(
                ACCESS_REFUSED, f"deletion of system {self.describe('exchange', name)} not allowed"
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise ChannelError(PRECONDITION_FAILED, f"{self.describe('exchange', name)} in use")
        self.delete_exchange(exchange)

    def delete_exchange(self, exchange: Exchange) -> None:
        """Remove an exchange and every binding to or from it, without checks."""
        if exchange.deleted:
            return
        exchange.deleted = True
        del self.exchanges[exchange.name]
        if exchange.delayed:
            # Its held messages go with it, as with the RabbitMQ plugin.
            for key in [k for k, d in self.delayed.items() if d.exchange is exchange]:
                held = self.delayed.pop(key)
                if held.message_id:
                    self.persistence.undelay(self.name, held.message_id)
        for binding, destination in list(exchange.bindings.items()):
            self._remove_binding(binding, exchange, destination)
        for binding, source in list(exchange.incoming.items()):
            self._remove_binding(binding, source, exchange)
        if exchange.durable:
            self.persistence.exchange_deleted(self.name, exchange)

    # -- bindings ------------------------------------------------------------

    def bind(
        self,
        source: Exchange,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: Mapping[str, Any] | None,
    ) -> Binding:
        """Add a binding; binding twice is a no-op (AMQP 0-9-1, ``queue.bind``)."""
        is_queue = isinstance(destination, Queue)
        binding = Binding(
            source.name,
            destination.name,
            "queue" if is_queue else "exchange",
            routing_key,
            freeze_arguments(arguments),
            dict(arguments or {}),
        )
        if binding in source.bindings:
            return binding
        source.bindings[binding] = destination
        source.router.add(routing_key, binding.arguments, destination)
        if isinstance(destination, Queue):
            destination.bindings[binding] = source
        else:
            destination.incoming[binding] = source
            source.exchange_destinations += 1
        if _durable_binding(source, destination):
            self.persistence.binding_added(self.name, binding)
        return binding

    def unbind(
        self,
        source: Exchange,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: Mapping[str, Any] | None,
    ) -> None:
        """Remove a binding if it exists (RabbitMQ 3.x: a missing binding is not an error)."""
        binding = Binding(
            source.name,
            destination.name,
            "queue" if isinstance(destination, Queue) else "exchange",
            routing_key,
            freeze_arguments(arguments),
        )
        if source.bindings.get(binding) is destination:
            self._remove_binding(binding, source, destination)

    def _remove_binding(
        self, binding: Binding, source: Exchange, destination: Queue | Exchange
    ) -> None:
        if binding not in source.bindings:
            return
        del source.bindings[binding]
        source.router.remove(binding.routing_key, binding.arguments, destination)
        if isinstance(destination, Queue):
            del destination.bindings[binding]
        else:
            del destination.incoming[binding]
            source.exchange_destinations -= 1
        if _durable_binding(source, destination):
            self.persistence.binding_removed(self.name, binding)
        # An auto-delete exchange goes when its last binding (as source) goes.
        if source.auto_delete and not source.bindings:
            self.delete_exchange(source)

    # -- queues --------------------------------------------------------------

    def queue_declare(
        self,
        connection: Connection | None,
        name: str = "",
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Queue:
        """``queue.declare`` on behalf of ``connection``: create or check a queue.

        An empty name gets a server-generated ``amq.gen-…`` name.  404 for a
        passive declare of a missing queue; 403 for a client-chosen ``amq.``
        name (RabbitMQ checks the name before looking the queue up); 405 for
        another connection's exclusive queue or a different ``exclusive``
        flag; 406 for different ``durable``/``auto_delete``/arguments, and
        for argument values that are not valid (``invalid arg 'x-…' for queue
        …``, see :func:`parse_queue_arguments`).  A redeclare counts as a use
        for ``x-expires``.
        """
        if passive:
            return self.get_queue(name, connection)
        if name == "":
            name = server_name("amq.gen-")
            while name in self.queues:
                name = server_name("amq.gen-")
        else:
            self._check_name("queue", name)
        args = dict(arguments or {})
        policy = parse_queue_arguments(args, self.describe("queue", name)) if args else None
        owner = connection if exclusive else None
        queue = self.queues.get(name)
        if queue is not None:
            if queue.exclusive_owner is not owner:
                self._locked(queue)
            self._check_equivalent("queue", name, "durable", durable, queue.durable)
            self._check_equivalent("queue", name, "auto_delete", auto_delete, queue.auto_delete)
            self._check_arguments("queue", name, args, queue.arguments)
            if policy is not None and policy.expires:
                queue.touch(self.schedule.now)
            return queue
        queue = self._create_queue(name, durable, owner, auto_delete, args, policy)
        if queue.stored:
            self.persistence.queue_declared(queue)
        return queue

    def _create_queue(
        self,
        name: str,
        durable: bool,
        owner: Connection | None,
        auto_delete: bool,
        args: dict[str, Any],
        policy: QueuePolicy | None,
    ) -> Queue:
        queue = Queue(
            name=name,
            vhost=self.name,
            durable=durable,
            exclusive_owner=owner,
            auto_delete=auto_delete,
            arguments=args,
            policy=policy,
            host=self,
            schedule=self.schedule,
        )
        self.queues[name] = queue
        if owner is not None:
            owner.exclusive_queues[queue] = None
        return queue

    def queue_delete(
        self,
        connection: Connection | None,
        name: str,
        if_unused: bool = False,
        if_empty: bool = False,
    ) -> int:
        """``queue.delete``: return the number of ready messages deleted.

        A missing queue counts as deleted with 0 messages (RabbitMQ 3.x);
        405 for another's exclusive queue; 406 if ``if_unused`` and it has
        consumers or ``if_empty`` and it has messages.
        """
        queue = self.queues.get(name)
        if queue is None:
            return 0
        self._check_exclusive(queue, connection)
        if if_unused and queue.consumer_count:
            raise ChannelError(PRECONDITION_FAILED, f"{self.describe('queue', name)} in use")
        if if_empty and queue.message_count:
            raise ChannelError(PRECONDITION_FAILED, f"{self.describe('queue', name)} not empty")
        return self.delete_queue(queue)

    def delete_queue(self, queue: Queue) -> int:
        """Remove a queue without checks: cancel its consumers, drop its bindings and messages.

        Consumers are told through ``ChannelSink.consumer_cancelled`` (RabbitMQ's
        consumer cancel notification).  Deliveries of this queue still unacked
        on channels become no-ops when settled.
        """
        if queue.deleted:
            return 0
        queue.deleted = True
        if self.queues.get(queue.name) is queue:
            del self.queues[queue.name]
        if queue.exclusive_owner is not None:
            queue.exclusive_owner.exclusive_queues.pop(queue, None)
        for consumer in queue.consumers:
            queue.remove_consumer(consumer)
            consumer.channel.consumer_removed(consumer)
        for binding, source in list(queue.bindings.items()):
            self._remove_binding(binding, source, queue)
        if queue.stored:
            self.persistence.queue_deleted(queue)
        return queue.purge()

    def purge_queue(self, queue: Queue) -> int:
        """``queue.purge``: drop the ready messages (in the store too); return how many.

        Delivered, unacked messages stay, in memory and in the store.
        """
        count = queue.purge()
        if queue.stored:
            self.persistence.queue_purged(queue, queue.unsettled_ids)
        return count

    # -- routing -------------------------------------------------------------

    def route(self, exchange: Exchange, message: Message) -> Collection[Queue]:
        """The queues a message published to ``exchange`` goes to, each once.

        The default exchange routes to the queue named by the routing key.
        Exchange-to-exchange bindings are followed (keeping the routing key,
        as RabbitMQ does); each exchange is visited once, so binding cycles
        terminate, and a queue reached by several paths gets one copy.
        """
        routing_key = message.routing_key
        if exchange.name == "":
            queue = self.queues.get(routing_key)
            return (queue,) if queue is not None else _NO_QUEUES
        headers = message.properties.headers
        destinations = exchange.router.match(routing_key, headers)
        if not exchange.exchange_destinations:
            return cast("Collection[Queue]", destinations)
        queues: dict[Queue, None] = {}
        visited = {exchange}
        pending = [destinations]
        while pending:
            for destination in pending.pop():
                if isinstance(destination, Queue):
                    queues[destination] = None
                elif destination not in visited:
                    visited.add(destination)
                    pending.append(destination.router.match(routing_key, headers))
        return queues.keys()

    # -- messages the core publishes itself ------------------------------------------------

    def dead_letter(self, queue: Queue, message: Message, reason: DropReason) -> None:
        """Republish a message ``queue`` let go of to its dead-letter exchange.

        Called by :meth:`Queue.drop` (and for messages refused by
        ``reject-publish-dlx``).  A missing dead-letter exchange drops the
        message, as RabbitMQ does.  Except for ``rejected`` deaths, a queue
        the message would cycle back into (:func:`is_cycle`) is skipped.
        """
        policy = queue.policy
        assert policy is not None and policy.dead_letter_exchange is not None
        exchange = self.exchanges.get(policy.dead_letter_exchange)
        if exchange is None:
            return
        now = self.schedule.now
        dead = dead_letter_message(
            message, reason, queue.name, exchange.name, policy.dead_letter_routing_key, now
        )
        self.republish(exchange, dead, now, check_cycles=reason is not DropReason.REJECTED)

    def republish(
        self, exchange: Exchange, message: Message, now: float, *, check_cycles: bool = False
    ) -> None:
        """Route a message the broker publishes itself (dead letters, due delayed messages).

        No confirm, no return; a delayed exchange holds it by its ``x-delay``.
        """
        if exchange.delayed:
            delay = message_delay_ms(message)
            if delay > 0:
                self.delay_message(exchange, message, now + delay / 1000)
                return
        self._enqueue_routed(exchange, message, now, check_cycles)

    def _enqueue_routed(
        self, exchange: Exchange, message: Message, now: float, check_cycles: bool
    ) -> None:
        expiration = message.properties.expiration
        ttl = None
        if expiration is not None:
            try:
                ttl = parse_expiration(expiration)
            except ChannelError:
                ttl = None  # Checked on publish; a message we made has none.
        queues = [
            q
            for q in self.route(exchange, message)
            # RabbitMQ logs and drops a cycle: it would go round with no consumer deciding.
            if not (check_cycles and is_cycle(q.name, message))
        ]
        message_id = 0
        persistence = self.persistence
        if message.properties.delivery_mode == 2 and persistence.enabled:
            stored = [q for q in queues if q.stored]
            if stored:
                message_id = persistence.append(
                    self.name,
                    [q.name for q in stored],
                    message,
                    None,
                    stored_expiries(stored, now, ttl),
                )
        for queue in queues:
            stored_id = message_id if queue.stored else 0
            if not queue.enqueue(message, now, ttl, stored_id) and stored_id:
                persistence.remove(self.name, queue.name, stored_id)

    def delay_message(
        self,
        exchange: Exchange,
        message: Message,
        due: float,
        *,
        token: object = None,
        message_id: int | None = None,
    ) -> int:
        """Hold ``message`` until ``due``, then route it by ``exchange``'s delayed type.

        The one entry of a delayed message, returning its key in
        :attr:`delayed`.  A persistent message held by a durable exchange is
        written to the store here (``token`` is its publish's confirm
        identity); ``message_id`` is given instead when the store put it back
        on restart.  No cap on the delay.
        """
        if message_id is None:
            message_id = 0
            persistence = self.persistence
            if (
                exchange.durable
                and message.properties.delivery_mode == 2
                and persistence.enabled
            ):
                message_id = persistence.delay(self.name, exchange.name, message, due, token)
        self._delay_seq += 1
        key = self._delay_seq
        self.delayed[key] = DelayedMessage(exchange, message, due, message_id)
        self.schedule.push(due, _DelayedRelease(self, key))
        return key

    def release_delayed(self, key: int, now: float) -> None:
        """A delayed message is due: route it now.  Its one exit.

        A stored one is appended to its durable queues before it is deleted
        from the store's delayed messages, so a crash in between duplicates
        at worst.  Messages of an exchange deleted meanwhile are dropped.
        """
        held = self.delayed.pop(key, None)
        if held is None or held.exchange.deleted:
            return
        self._enqueue_routed(held.exchange, held.message, now, False)
        if held.message_id:
            self.persistence.undelay(self.name, held.message_id)

    # -- rebuilding from a store ----------------------------------------------------

    def restore_exchange(
        self,
        name: str,
        type_: str,
        auto_delete: bool,
        internal: bool,
        arguments: Mapping[str, Any],
    ) -> Exchange:
        """Recreate a stored durable exchange (``KeyError`` for an unknown type)."""
        existing = self.exchanges.get(name)
        if existing is not None:
            return existing
        return self._create_exchange(
            name,
            type_,
            durable=True,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments,
        )

    def restore_queue(self, name: str, auto_delete: bool, arguments: Mapping[str, Any]) -> Queue:
        """Recreate a stored durable queue (``ChannelError`` if its arguments no longer parse)."""
        existing = self.queues.get(name)
        if existing is not None:
            return existing
        args = dict(arguments)
        policy = parse_queue_arguments(args, self.describe("queue", name)) if args else None
        return self._create_queue(name, True, None, auto_delete, args, policy)

    def restore_binding(
        self,
        source: str,
        destination: str,
        destination_kind: str,
        routing_key: str,
        arguments: Mapping[str, Any],
    ) -> bool:
        """Recreate a stored binding; False when one of its ends is missing."""
        src = self.exchanges.get(source)
        dst: Queue | Exchange | None
        if destination_kind == "queue":
            dst = self.queues.get(destination)
        else:
            dst = self.exchanges.get(destination)
        if src is None or dst is None:
            return False
        self.bind(src, dst, routing_key, arguments)
        return True


def _durable_binding(source: Exchange, destination: Queue | Exchange) -> bool:
    """Whether a binding survives a restart: both ends durable, no exclusive queue."""
    if not source.durable:
        return False
    if isinstance(destination, Queue):
        return destination.stored
    return destination.durable
