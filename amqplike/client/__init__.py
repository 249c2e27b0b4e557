"""Clients for amqplike, with pika's names, arguments, return shapes and exceptions.

* :mod:`amqplike.client.sync`: ``BlockingConnection``/``BlockingChannel``
  over plain sockets (no Twisted), one thread per connection.
* :mod:`amqplike.client.twisted`: ``connect()`` returning Deferreds, for
  Twisted programs (imported on its own so this package never loads Twisted).
* :mod:`amqplike.client.rpc` and :mod:`amqplike.client.twisted_rpc`:
  request-reply over RabbitMQ-style direct reply-to.

Both are thin drivers of one sans-IO engine (``amqplike.client._engine``).
Quick start::

    from amqplike.client import BlockingConnection, BasicProperties

    with BlockingConnection("amqplike://guest:guest@127.0.0.1:5680/%2F") as conn:
        ch = conn.channel()
        ch.queue_declare("hello")
        ch.basic_publish("", "hello", b"hi", BasicProperties(content_type="text/plain"))
        method, properties, body = ch.basic_get("hello", auto_ack=True)
"""

from __future__ import annotations

from amqplike.client import exceptions
from amqplike.client._engine import MethodFrame
from amqplike.client.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    ChannelClosed,
    ChannelClosedByBroker,
    ChannelWrongStateError,
    ConnectionClosed,
    ConnectionClosedByBroker,
    ConnectionWrongStateError,
    NackError,
    RpcTimeout,
    UnroutableError,
)
from amqplike.client.parameters import (
    ConnectionParameters,
    PlainCredentials,
    URLParameters,
)
from amqplike.client.rpc import RpcClient, RpcServer
from amqplike.client.sync import BlockingChannel, BlockingConnection
from amqplike.properties import BasicProperties

__all__ = [
    "AMQPChannelError",
    "AMQPConnectionError",
    "AMQPError",
    "BasicProperties",
    "BlockingChannel",
    "BlockingConnection",
    "ChannelClosed",
    "ChannelClosedByBroker",
    "ChannelWrongStateError",
    "ConnectionClosed",
    "ConnectionClosedByBroker",
    "ConnectionParameters",
    "ConnectionWrongStateError",
    "MethodFrame",
    "NackError",
    "PlainCredentials",
    "RpcClient",
    "RpcServer",
    "RpcTimeout",
    "URLParameters",
    "UnroutableError",
    "exceptions",
]
