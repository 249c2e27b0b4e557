"""The sans-IO broker core: vhosts, exchanges, bindings, queues, consumers, acks.

It does no I/O, reads no clock (``now`` is an argument) and imports no
Twisted; the server drives it and receives deliveries through
:class:`ChannelSink`.  See ``docs/architecture.md``, "Broker core".
"""

from __future__ import annotations

from amqplike.core.broker import Broker, Connection
from amqplike.core.channel import Channel, ChannelSink
from amqplike.core.exchanges import Binding, Exchange
from amqplike.core.message import DropReason, GetResult, Message
from amqplike.core.queues import Consumer, Queue, QueueEntry
from amqplike.core.vhost import DIRECT_REPLY_TO, VirtualHost

__all__ = [
    "DIRECT_REPLY_TO",
    "Binding",
    "Broker",
    "Channel",
    "ChannelSink",
    "Connection",
    "Consumer",
    "DropReason",
    "Exchange",
    "GetResult",
    "Message",
    "Queue",
    "QueueEntry",
    "VirtualHost",
]
