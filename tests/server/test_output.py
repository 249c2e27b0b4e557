"""When the server's output reaches the socket, and how long the reactor polls after input.

Twisted's TCP transport only queues written bytes and sends them on the
reactor's next write-readiness pass.  The server asks a transport that can
write at once (``IWriteDescriptor``, plain TCP) to do so at the end of each
batch, which saves a reactor round per reply; these tests pin that down
with a transport that sends nothing until ``doWrite`` is called.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IWriteDescriptor
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from amqplike.core import Broker
from amqplike.server import BrokerFactory, ServerLimits
from amqplike.wire.methods import (
    BasicConsume,
    BasicConsumeOk,
    BasicDeliver,
    ConnectionClose,
    ConnectionCloseOk,
    QueueDeclare,
    QueueDeclareOk,
)
from tests.server._client import TestClient


@implementer(IWriteDescriptor)
class SocketTransport(StringTransport):
    """Holds written bytes back, as Twisted's TCP transport does, until ``doWrite``."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[bytes] = []
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.queued.append(data)

    def writeSequence(self, seq: object) -> None:
        self.queued.extend(seq)  # type: ignore[arg-type]

    def doWrite(self) -> None:
        """Send what is queued (the reactor calls this when the socket is writable)."""
        self.events.append("doWrite")
        for data in self.queued:
            super().write(data)
        self.queued.clear()

    def loseConnection(self) -> None:
        self.events.append("loseConnection")
        super().loseConnection()

    def fileno(self) -> int:
        return -1

    def logPrefix(self) -> str:
        return "test"

    def connectionLost(self, reason: object) -> None:
        pass


def socket_client(factory: BrokerFactory) -> tuple[TestClient, SocketTransport]:
    """A handshaken client with channel 1 open, over a :class:`SocketTransport`."""
    client = TestClient(factory)
    transport = SocketTransport()
    transport.peerAddr = client.transport.getPeer()
    client.transport = transport
    protocol = factory.buildProtocol(client.transport.getPeer())
    client.protocol = protocol
    protocol.makeConnection(transport)
    client.handshake()
    client.open_channel(1)
    return client, transport


def test_reply_is_sent_within_the_batch(factory: BrokerFactory) -> None:
    """A method's reply is on the socket when ``dataReceived`` returns, not queued."""
    client, transport = socket_client(factory)
    client.send(1, QueueDeclare(queue="q"))
    assert client.expect(QueueDeclareOk, 1).queue == "q"
    assert transport.queued == []


def test_delivery_to_another_connection_is_sent_within_the_batch(
    factory: BrokerFactory,
) -> None:
    """A publish on one connection puts the delivery on the consumer's socket at once."""
    consumer, consumer_transport = socket_client(factory)
    consumer.send(1, QueueDeclare(queue="q"))
    consumer.expect(QueueDeclareOk, 1)
    consumer.send(1, BasicConsume(queue="q", consumer_tag="c", no_ack=True))
    consumer.expect(BasicConsumeOk, 1)
    publisher, _ = socket_client(factory)
    publisher.publish(1, b"hello", routing_key="q")
    command = consumer.received()[0]
    assert isinstance(command.method, BasicDeliver)
    assert command.body == b"hello"
    assert consumer_transport.queued == []


def test_closing_leaves_the_last_write_to_the_reactor(factory: BrokerFactory) -> None:
    """Once the server drops the connection it writes through the reactor only.

    ``doWrite`` after ``loseConnection`` would send the last bytes and
    return the "close now" result to us instead of the reactor, leaving
    the socket open.
    """
    client, transport = socket_client(factory)
    client.send(0, ConnectionClose(200, "bye", 0, 0))
    assert transport.events[-1] == "loseConnection"
    assert transport.queued, "close-ok waits for the reactor's write pass"
    transport.doWrite()
    assert client.expect(ConnectionCloseOk, 0)


def _due_now(clock: Clock) -> list[IDelayedCall]:
    return [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]


def test_busy_poll_keeps_the_reactor_polling_for_its_window(broker: Broker, clock: Clock) -> None:
    """After input, a zero-delay call keeps the reactor's poll from blocking, then stops."""
    factory = BrokerFactory(broker, clock, ServerLimits(busy_poll_seconds=0.0002))
    client = TestClient(factory)
    client.handshake()
    assert len(_due_now(clock)) == 1
    clock.advance(0.001)
    assert _due_now(clock) == []
    client.open_channel(1)
    assert len(_due_now(clock)) == 1
    factory.stopFactory()
    assert _due_now(clock) == []


def test_no_busy_poll_unless_asked(broker: Broker, clock: Clock) -> None:
    """The library's default (ServerLimits()) lets the reactor sleep right after input."""
    client = TestClient(BrokerFactory(broker, clock, ServerLimits()))
    client.handshake()
    client.open_channel(1)
    assert _due_now(clock) == []


def test_no_busy_poll_while_paused(broker: Broker, clock: Clock) -> None:
    """While ``busy_poll_paused`` says so (the store is writing) the reactor may sleep."""
    factory = BrokerFactory(broker, clock, ServerLimits(busy_poll_seconds=0.0002))
    writing = [True]
    factory.busy_poll_paused = lambda: writing[0]
    client = TestClient(factory)
    client.handshake()
    assert _due_now(clock) == []
    writing[0] = False
    client.open_channel(1)
    assert len(_due_now(clock)) == 1
    writing[0] = True
    clock.advance(0.0001)
    assert _due_now(clock) == []
