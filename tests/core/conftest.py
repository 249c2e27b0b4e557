"""Fixtures for the broker core tests: a broker, a connection and recording sinks."""

from __future__ import annotations

from typing import Any

import pytest

from amqplike.core import Broker, Channel, Connection, Message
from amqplike.properties import EMPTY_PROPERTIES, BasicProperties


class RecordingSink:
    """A ChannelSink that records every call, in order, as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        self.events.append(("deliver", consumer_tag, delivery_tag, redelivered, message))

    def returned(self, reply_code: int, reply_text: str, message: Message) -> None:
        self.events.append(("returned", reply_code, reply_text, message))

    def confirmed(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        self.events.append(("confirmed", delivery_tag, multiple, ack))

    def consumer_cancelled(self, consumer_tag: str) -> None:
        self.events.append(("cancelled", consumer_tag))

    def channel_closed(self, reply_code: int, reply_text: str) -> None:
        self.events.append(("closed", reply_code, reply_text))

    @property
    def messages(self) -> list[Message]:
        """The messages delivered, in order."""
        return [e[4] for e in self.events if e[0] == "deliver"]

    @property
    def confirms(self) -> list[tuple[int, bool]]:
        """``(delivery_tag, ack)`` of each publisher confirm."""
        return [(e[1], e[3]) for e in self.events if e[0] == "confirmed"]

    @property
    def deliveries(self) -> list[tuple[Any, ...]]:
        """``(consumer_tag, delivery_tag, redelivered, body)`` of each delivery."""
        return [(e[1], e[2], e[3], e[4].body) for e in self.events if e[0] == "deliver"]

    @property
    def bodies(self) -> list[bytes]:
        """The bodies delivered, in order."""
        return [e[4].body for e in self.events if e[0] == "deliver"]

    def tags(self) -> list[int]:
        """Delivery tags delivered, in order."""
        return [e[2] for e in self.events if e[0] == "deliver"]

    def clear(self) -> None:
        self.events.clear()


def publish(
    ch: Channel,
    routing_key: str,
    body: bytes = b"x",
    exchange: str = "",
    properties: BasicProperties = EMPTY_PROPERTIES,
    mandatory: bool = False,
) -> None:
    """Publish with the defaults tests mostly want."""
    ch.basic_publish(exchange, routing_key, properties, body, mandatory=mandatory, now=0.0)


def send(
    ch: Channel,
    routing_key: str,
    body: bytes = b"x",
    *,
    now: float = 0.0,
    exchange: str = "",
    expiration: str | None = None,
    headers: dict[str, Any] | None = None,
    priority: int | None = None,
    mandatory: bool = False,
) -> None:
    """Publish at time ``now`` (told to the broker first, as the server does)."""
    properties = BasicProperties(expiration=expiration, headers=headers, priority=priority)
    ch.connection.broker.advance(now)
    ch.basic_publish(exchange, routing_key, properties, body, mandatory=mandatory, now=now)


@pytest.fixture
def conn(broker: Broker) -> Connection:
    """A guest connection to '/'."""
    return broker.connect()


@pytest.fixture
def sink() -> RecordingSink:
    """The recording sink of channel 1."""
    return RecordingSink()


@pytest.fixture
def ch(conn: Connection, sink: RecordingSink) -> Channel:
    """Channel 1 of ``conn``, delivering to ``sink``."""
    return conn.open_channel(1, sink)
