"""Heartbeats on one timer per connection, driven by a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from amqplike.server import BrokerFactory
from amqplike.wire import HEARTBEAT_FRAME
from amqplike.wire.methods import QueueDeclare, QueueDeclareOk
from tests.server._client import HEARTBEAT, TestClient


def test_heartbeat_sent_when_idle(factory: BrokerFactory, clock: Clock) -> None:
    """With nothing else to send for h/2 seconds the server sends a heartbeat frame."""
    client = TestClient(factory)
    client.handshake(heartbeat=10)
    client.transport.clear()
    client._read = 0
    clock.advance(4.9)
    assert client.transport.value() == b""
    clock.advance(0.2)
    assert client.transport.value() == HEARTBEAT_FRAME
    assert len(clock.getDelayedCalls()) == 1


def test_no_heartbeat_while_writing(factory: BrokerFactory, clock: Clock) -> None:
    """Traffic counts: a connection that keeps writing needs no heartbeat frames."""
    client = TestClient(factory)
    client.handshake(heartbeat=10)
    client.open_channel(1)
    for _ in range(10):
        clock.advance(3)
        client.send(1, QueueDeclare("q"))
        assert client.received()[-1].method == QueueDeclareOk("q", 0, 0)
    assert HEARTBEAT not in client.received()


def test_silent_peer_dropped_after_two_intervals(factory: BrokerFactory, clock: Clock) -> None:
    """A peer silent for 2h seconds is dropped; one that sends heartbeats is kept."""
    client = TestClient(factory)
    client.handshake(heartbeat=10)
    for _ in range(5):
        clock.advance(5)
        client.send_raw(HEARTBEAT_FRAME)
    assert not client.closed
    clock.advance(19.9)
    assert not client.closed
    clock.advance(0.2)
    assert client.closed
    assert client.transport.disconnected
    client.disconnect()
    assert clock.getDelayedCalls() == []


def test_heartbeat_disabled(factory: BrokerFactory, clock: Clock) -> None:
    """With heartbeat 0 no timer runs and silence is allowed."""
    client = TestClient(factory)
    client.handshake(heartbeat=0)
    assert clock.getDelayedCalls() == []
    clock.advance(3600)
    assert not client.closed
