"""What the server needs from the broker core, as structural types.

The server reaches the core only through these narrow interfaces (the
contract in ``docs/architecture.md``); ``amqplike.core``'s classes satisfy
them structurally, and tests may pass any object that does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from amqplike.properties import BasicProperties

if TYPE_CHECKING:
    from amqplike.core.message import GetResult, Message


class ChannelSink(Protocol):
    """The port through which the core hands a channel its outbound events."""

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        """A message for consumer ``consumer_tag`` (``basic.deliver``)."""

    def returned(self, reply_code: int, reply_text: str, message: Message) -> None:
        """An unroutable mandatory message comes back (``basic.return``)."""

    def confirmed(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        """A publisher confirm (``basic.ack``/``basic.nack`` from the server)."""

    def consumer_cancelled(self, consumer_tag: str) -> None:
        """The broker cancelled a consumer (server-sent ``basic.cancel``)."""


class CoreChannel(Protocol):
    """A channel of the core: every AMQP channel-level operation."""

    def exchange_declare(
        self,
        exchange: str,
        type: str = ...,
        passive: bool = ...,
        durable: bool = ...,
        auto_delete: bool = ...,
        internal: bool = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> object:
        """``exchange.declare``."""

    def exchange_delete(self, exchange: str, if_unused: bool = ...) -> object:
        """``exchange.delete``."""

    def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> object:
        """``exchange.bind``."""

    def exchange_unbind(
        self,
        destination: str,
        source: str,
        routing_key: str = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> object:
        """``exchange.unbind``."""

    def queue_declare(
        self,
        queue: str = ...,
        passive: bool = ...,
        durable: bool = ...,
        exclusive: bool = ...,
        auto_delete: bool = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> tuple[str, int, int]:
        """``queue.declare``: returns ``(name, message_count, consumer_count)``."""

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> object:
        """``queue.bind``."""

    def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> object:
        """``queue.unbind``."""

    def queue_purge(self, queue: str) -> int:
        """``queue.purge``: returns the number of messages purged."""

    def queue_delete(self, queue: str, if_unused: bool = ..., if_empty: bool = ...) -> int:
        """``queue.delete``: returns the number of messages deleted."""

    def basic_qos(
        self, prefetch_size: int = ..., prefetch_count: int = ..., global_: bool = ...
    ) -> object:
        """``basic.qos``."""

    def basic_consume(
        self,
        queue: str,
        consumer_tag: str = ...,
        no_ack: bool = ...,
        exclusive: bool = ...,
        arguments: Mapping[str, Any] | None = ...,
    ) -> str:
        """``basic.consume``: returns the consumer tag."""

    def basic_cancel(self, consumer_tag: str) -> object:
        """``basic.cancel``."""

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        body: bytes,
        *,
        mandatory: bool = ...,
        now: float = ...,
    ) -> object:
        """``basic.publish``."""

    def basic_get(self, queue: str, no_ack: bool = ...) -> GetResult | None:
        """``basic.get``: a result, or ``None`` for ``basic.get-empty``."""

    def basic_ack(self, delivery_tag: int, multiple: bool = ...) -> object:
        """``basic.ack``."""

    def basic_nack(self, delivery_tag: int, multiple: bool = ..., requeue: bool = ...) -> object:
        """``basic.nack``."""

    def basic_reject(self, delivery_tag: int, requeue: bool = ...) -> object:
        """``basic.reject``."""

    def basic_recover(self, requeue: bool = ...) -> object:
        """``basic.recover``."""

    def confirm_select(self) -> object:
        """``confirm.select``."""

    def flow(self, active: bool) -> object:
        """Pause (``False``) or resume deliveries to this channel."""

    def close(self) -> object:
        """Close the channel: cancel its consumers, requeue its unacked deliveries."""


class CoreConnection(Protocol):
    """A client connection as the core sees it."""

    def open_channel(self, number: int, sink: ChannelSink) -> CoreChannel:
        """Open channel ``number``, delivering through ``sink``."""

    def close(self) -> object:
        """Close every channel and delete the connection's exclusive queues."""


class CoreBroker(Protocol):
    """The broker: users and virtual hosts."""

    def authenticate(self, user: str, password: str) -> bool:
        """True when ``user`` exists and ``password`` is theirs."""

    def connect(self, vhost: str, user: str) -> CoreConnection:
        """Open a connection to ``vhost``; ``HardError(530)`` if it is unknown."""

    def advance(self, now: float) -> object:
        """Tell the core the time (seconds on the reactor's clock), once per batch of work."""
