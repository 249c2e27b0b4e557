"""A virtual host: its exchanges, queues and bindings, and routing between them.

The checks and error texts follow RabbitMQ's ``rabbit_channel`` so a user
sees the messages they know.  Channels call in here with their connection,
which is what exclusive-queue checks need; services (management, expiry)
can use the same methods.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from attrs import define, field

from amqplike.core.exchanges import Binding, Exchange
from amqplike.core.message import Message
from amqplike.core.queues import Queue
from amqplike.core.routing import ROUTER_TYPES, freeze_arguments
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
    exchanges: dict[str, Exchange] = field(factory=dict, init=False)
    queues: dict[str, Queue] = field(factory=dict, init=False)
    #: Direct reply-to: each channel with a reply consumer, by its unguessable token.
    reply_channels: dict[str, Channel] = field(factory=dict, init=False)

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
        return self.reply_channels.get(name[len(REPLY_TO_PREFIX):])

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
        exchange = Exchange(
            name=name,
            type=type_,
            router=ROUTER_TYPES[type_](),
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=dict(arguments or {}),
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
        """
        self.check_not_default(name)
        if passive:
            return self.get_exchange(name)
        if type not in ROUTER_TYPES:
            raise HardError(COMMAND_INVALID, f"unknown exchange type '{type}'")
        args = dict(arguments or {})
        exchange = self.exchanges.get(name)
        if exchange is None:
            self._check_name("exchange", name)
            return self._create_exchange(
                name, type, durable=durable, auto_delete=auto_delete,
                internal=internal, arguments=args,
            )
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
        for binding, destination in list(exchange.bindings.items()):
            self._remove_binding(binding, exchange, destination)
        for binding, source in list(exchange.incoming.items()):
            self._remove_binding(binding, source, exchange)

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
        flag; 406 for different ``durable``/``auto_delete``/arguments.
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
        owner = connection if exclusive else None
        queue = self.queues.get(name)
        if queue is not None:
            if queue.exclusive_owner is not owner:
                self._locked(queue)
            self._check_equivalent("queue", name, "durable", durable, queue.durable)
            self._check_equivalent("queue", name, "auto_delete", auto_delete, queue.auto_delete)
            self._check_arguments("queue", name, args, queue.arguments)
            return queue
        queue = Queue(
            name=name,
            vhost=self.name,
            durable=durable,
            exclusive_owner=owner,
            auto_delete=auto_delete,
            arguments=args,
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
        return queue.purge()

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
