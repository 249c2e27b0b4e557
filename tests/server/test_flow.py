"""Publisher flow control: reading from publishers pauses while the store's backlog is high.

The store is a :class:`MemoryStore` that commits only when told, so the
test controls its backlog; the service, adapter, factory and protocols are
the real ones, over ``StringTransport`` and a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock

from amqplike.core import Broker
from amqplike.properties import BasicProperties
from amqplike.server import BrokerFactory
from amqplike.services.persistence import FLOW_OVERHEAD_BYTES, PersistenceService
from amqplike.store import MemoryStore
from amqplike.store._memory import MemoryDisk
from amqplike.wire.methods import BasicConsume, BasicConsumeOk, QueueDeclare, QueueDeclareOk
from tests.server._client import TestClient, make_factory

PERSISTENT = BasicProperties(delivery_mode=2)
BODY = b"x" * 1000
#: What one publish of ``BODY`` weighs in the backlog.
WEIGHT = len(BODY) + FLOW_OVERHEAD_BYTES
HIGH = 10 * WEIGHT
LOW = 4 * WEIGHT


class Setup:
    """A factory whose broker persists into a hand-committed memory store."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.broker = Broker()
        self.factory: BrokerFactory = make_factory(self.broker, self.clock)
        self.stores: list[MemoryStore] = []

        def open_store(listener: object) -> MemoryStore:
            store = MemoryStore(MemoryDisk(), listener)  # type: ignore[arg-type]
            self.stores.append(store)
            return store

        self.service = PersistenceService(
            self.broker,
            open_store,
            self.clock,
            notifier=self.factory,
            page_out_seconds=0,
            flow_high_bytes=HIGH,
            flow_low_bytes=LOW,
        )
        self.service.startService()

    @property
    def store(self) -> MemoryStore:
        return self.stores[0]

    def client(self) -> TestClient:
        client = TestClient(self.factory)
        client.handshake()
        client.open_channel(1)
        return client


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.service.stopService()


def _declare(client: TestClient, name: str) -> None:
    client.send(1, QueueDeclare(queue=name, durable=True))
    client.expect(QueueDeclareOk, 1)


def test_publisher_paused_above_high_and_resumed_below_low(setup: Setup) -> None:
    """Above the high watermark the publishing connection's transport stops being read,
    a consuming connection is still read and served, and both resume below the low mark."""
    publisher = setup.client()
    consumer = setup.client()
    _declare(consumer, "q")
    _declare(consumer, "side")
    setup.store.commit()
    consumer.send(1, BasicConsume(queue="side", no_ack=True))
    consumer.expect(BasicConsumeOk, 1)

    for _ in range(9):
        publisher.publish(1, BODY, "q", properties=PERSISTENT)
    assert publisher.transport.producerState == "producing"
    for _ in range(3):
        publisher.publish(1, BODY, "q", properties=PERSISTENT)
    assert setup.factory.flow_paused
    assert publisher.transport.producerState == "paused"
    assert publisher.protocol.reading_paused
    # The consumer never published: it is still read, and deliveries reach it.
    assert consumer.transport.producerState == "producing"
    assert not consumer.protocol.reading_paused

    _declare(consumer, "side")  # the consumer's commands are still answered

    setup.store.commit()  # the backlog is written: below the low watermark
    assert not setup.factory.flow_paused
    assert publisher.transport.producerState == "producing"


def test_new_publisher_is_paused_on_its_first_publish(setup: Setup) -> None:
    """A connection that starts publishing while flow control is on is paused at once."""
    first = setup.client()
    _declare(first, "q")
    for _ in range(12):
        first.publish(1, BODY, "q", properties=PERSISTENT)
    assert setup.factory.flow_paused
    late = setup.client()
    assert late.transport.producerState == "producing"
    late.publish(1, BODY, "q", properties=PERSISTENT)
    assert late.transport.producerState == "paused"


def test_paused_backlog_resumes_only_below_low(setup: Setup) -> None:
    """Writing part of the backlog, but not down to the low watermark, keeps the pause."""
    publisher = setup.client()
    _declare(publisher, "q")
    setup.store.commit()
    for _ in range(12):
        publisher.publish(1, BODY, "q", properties=PERSISTENT)
    assert setup.factory.flow_paused
    # The data already read (one socket read's worth) is still handled.
    for _ in range(4):
        publisher.publish(1, BODY, "q", properties=PERSISTENT)
    adapter = setup.service.adapter
    assert adapter.backlog_bytes > LOW
    assert publisher.transport.producerState == "paused"
    setup.store.commit()
    assert publisher.transport.producerState == "producing"


def test_lost_publisher_is_forgotten(setup: Setup) -> None:
    """connectionLost drops a paused publisher from flow control; resuming skips it."""
    publisher = setup.client()
    _declare(publisher, "q")
    for _ in range(12):
        publisher.publish(1, BODY, "q", properties=PERSISTENT)
    assert publisher.transport.producerState == "paused"
    publisher.disconnect()
    assert publisher.protocol not in setup.factory.publishers
    setup.store.commit()
    assert not setup.factory.flow_paused
    assert publisher.transport.producerState == "paused"


def test_heartbeat_does_not_drop_a_paused_publisher(setup: Setup) -> None:
    """A publisher we stopped reading is not dropped for missed heartbeats."""
    publisher = TestClient(setup.factory)
    publisher.handshake(heartbeat=2)
    publisher.open_channel(1)
    _declare(publisher, "q")
    for _ in range(12):
        publisher.publish(1, BODY, "q", properties=PERSISTENT)
    assert publisher.transport.producerState == "paused"
    setup.clock.pump([1.0] * 20)
    assert not publisher.closed
    setup.store.commit()
    assert publisher.transport.producerState == "producing"
