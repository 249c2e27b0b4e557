"""The clients' exceptions, named and arranged as pika's (``pika.exceptions``).

Code that catches ``pika.exceptions.ChannelClosedByBroker`` or
``pika.exceptions.AMQPConnectionError`` catches the same names here.  These
are client-side exceptions, distinct from :class:`amqplike.errors.AMQPError`
(which the broker raises and turns into ``close`` frames); a broker error
reaches a client as ``ChannelClosedByBroker``/``ConnectionClosedByBroker``
carrying the broker's ``reply_code`` and ``reply_text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AMQPError(Exception):
    """Base of every client exception."""

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}: {self.args!r}"


class AMQPConnectionError(AMQPError):
    """The connection could not be opened, or failed."""


class ConnectionOpenAborted(AMQPConnectionError):
    """The client closed the connection before it finished opening."""


class StreamLostError(AMQPConnectionError):
    """The TCP connection was lost without an AMQP close handshake."""


class IncompatibleProtocolError(AMQPConnectionError):
    """The server answered the protocol header with another protocol version."""


class AMQPHeartbeatTimeout(AMQPConnectionError):
    """Nothing arrived from the server for two heartbeat intervals."""


class NoFreeChannels(AMQPConnectionError):
    """Every channel number up to the negotiated ``channel_max`` is in use."""


class ConnectionWrongStateError(AMQPConnectionError):
    """The operation needs an open connection (it is closing or closed)."""


class _CloseReason(Exception):
    """Mixin for a close carrying AMQP's ``reply_code`` and ``reply_text`` as its args."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(int(reply_code), str(reply_text))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}: ({self.reply_code}) {self.reply_text!r}"

    @property
    def reply_code(self) -> int:
        """The AMQP reply code: 200 for a normal close, 404 for an unknown queue ..."""
        code: int = self.args[0]
        return code

    @property
    def reply_text(self) -> str:
        """The reason, e.g. ``"NOT_FOUND - no queue 'q' in vhost '/'"``."""
        text: str = self.args[1]
        return text


class ConnectionClosed(_CloseReason, AMQPConnectionError):
    """The connection was closed; ``reply_code``/``reply_text`` say why."""


class ConnectionClosedByBroker(ConnectionClosed):
    """The broker closed the connection with ``connection.close``."""


class ConnectionClosedByClient(ConnectionClosed):
    """This client closed the connection."""


class ProbableAuthenticationError(ConnectionClosedByBroker):
    """The broker closed the connection while checking the credentials (403).

    Unlike pika's it is also a :class:`ConnectionClosedByBroker`, so the
    reply code and text are at hand.
    """


class ProbableAccessDeniedError(ConnectionClosedByBroker):
    """The broker refused access to the virtual host (closed during ``connection.open``)."""


class AMQPChannelError(AMQPError):
    """Base of the channel-level exceptions."""


class ChannelWrongStateError(AMQPChannelError):
    """The operation needs an open channel (it is closing or closed)."""


class ChannelClosed(_CloseReason, AMQPChannelError):
    """The channel was closed; ``reply_code``/``reply_text`` say why."""


class ChannelClosedByBroker(ChannelClosed):
    """The broker closed the channel with ``channel.close`` (a soft error, e.g. 404/406)."""


class ChannelClosedByClient(ChannelClosed):
    """This client closed the channel (or its connection)."""


class DuplicateConsumerTag(AMQPChannelError):
    """The consumer tag is already in use on this channel."""


class ConsumerCancelled(AMQPChannelError):
    """The consumer was cancelled, by this client or by the broker."""


class ReturnedMessage:
    """A message the broker returned with ``basic.return`` (pika's ``ReturnedMessage``)."""

    __slots__ = ("body", "method", "properties")

    def __init__(self, method: Any, properties: Any, body: bytes) -> None:
        #: The ``BasicReturn`` method: ``reply_code``, ``reply_text``, ``exchange``, ``routing_key``.
        self.method = method
        #: The message's ``BasicProperties``.
        self.properties = properties
        #: The message body.
        self.body = body

    def __repr__(self) -> str:
        return f"ReturnedMessage({self.method!r}, {self.properties!r}, {self.body!r:.80})"


class UnroutableError(AMQPChannelError):
    """A mandatory message published in confirm mode was returned as unroutable.

    ``messages`` holds the :class:`ReturnedMessage` objects (in the Twisted
    client, ``ReceivedMessage`` tuples), as in pika.
    """

    def __init__(self, messages: Sequence[Any]) -> None:
        super().__init__(
            f"{len(messages)} unroutable message(s) returned"
        )
        self.messages = list(messages)

    def __repr__(self) -> str:
        return f"UnroutableError: {len(self.messages)} unroutable messages returned by broker"


class NackError(AMQPChannelError):
    """A message published in confirm mode was rejected (``basic.nack``) by the broker."""

    def __init__(self, messages: Sequence[Any]) -> None:
        super().__init__(f"{len(messages)} message(s) nacked")
        self.messages = list(messages)

    def __repr__(self) -> str:
        return f"NackError: {len(self.messages)} messages nacked by broker"


class ReentrancyError(AMQPError):
    """A blocking call that dispatches callbacks was made from inside such a callback."""


class DuplicateGetOkCallback(AMQPChannelError):
    """``basic_get`` was called again on a Twisted channel before the previous one finished."""


class RpcTimeout(AMQPError):
    """An RPC call got no reply within its timeout.

    ``correlation_id`` names the request; a reply that arrives later is dropped.
    """

    def __init__(self, correlation_id: str, timeout: float) -> None:
        super().__init__(f"no reply to RPC {correlation_id} within {timeout:g} s")
        self.correlation_id = correlation_id
        self.timeout = timeout


__all__ = [
    "AMQPChannelError",
    "AMQPConnectionError",
    "AMQPError",
    "AMQPHeartbeatTimeout",
    "ChannelClosed",
    "ChannelClosedByBroker",
    "ChannelClosedByClient",
    "ChannelWrongStateError",
    "ConnectionClosed",
    "ConnectionClosedByBroker",
    "ConnectionClosedByClient",
    "ConnectionOpenAborted",
    "ConnectionWrongStateError",
    "ConsumerCancelled",
    "DuplicateConsumerTag",
    "DuplicateGetOkCallback",
    "IncompatibleProtocolError",
    "NackError",
    "NoFreeChannels",
    "ProbableAccessDeniedError",
    "ProbableAuthenticationError",
    "ReentrancyError",
    "ReturnedMessage",
    "RpcTimeout",
    "StreamLostError",
    "UnroutableError",
]
