"""The sans-IO broker core: vhosts, exchanges, bindings, queues, consumers, acks.

It does no I/O, reads no clock (``now`` is an argument) and imports no
Twisted; the server drives it and receives deliveries through
:class:`ChannelSink`.  See ``docs/architecture.md``, "Broker core".
"""

from __future__ import annotations

from amqplike.core.arguments import QueuePolicy, RetryBackoff
from amqplike.core.broker import Broker, Connection
from amqplike.core.channel import Channel, ChannelSink, ClosableChannelSink
from amqplike.core.exchanges import Binding, Exchange
from amqplike.core.message import DropReason, GetResult, Message
from amqplike.core.persistence import (
    NO_PERSISTENCE,
    ConfirmToken,
    NoPersistence,
    Persistence,
    settle_stored,
)
from amqplike.core.queues import Consumer, Queue, QueueEntry
from amqplike.core.schedule import Schedule, Task
from amqplike.core.vhost import (
    DELAYED_EXCHANGE_TYPE,
    DIRECT_REPLY_TO,
    DelayedMessage,
    VirtualHost,
)

__all__ = [
    "DELAYED_EXCHANGE_TYPE",
    "DIRECT_REPLY_TO",
    "NO_PERSISTENCE",
    "Binding",
    "Broker",
    "Channel",
    "ChannelSink",
    "ClosableChannelSink",
    "ConfirmToken",
    "Connection",
    "Consumer",
    "DelayedMessage",
    "DropReason",
    "Exchange",
    "GetResult",
    "Message",
    "NoPersistence",
    "Persistence",
    "Queue",
    "QueueEntry",
    "QueuePolicy",
    "RetryBackoff",
    "Schedule",
    "Task",
    "VirtualHost",
    "settle_stored",
]
