"""The deadline sweeper service: one timer on a fake clock, driving the core's deadlines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from amqplike.core import Broker, Channel
from amqplike.properties import BasicProperties
from amqplike.server import BrokerFactory
from amqplike.services import DeadlineService
from amqplike.tap import Options, makeService
from amqplike.wire.methods import (
    BasicAck,
    BasicConsume,
    BasicConsumeOk,
    BasicDeliver,
    ChannelClose,
    ChannelCloseOk,
    QueueDeclare,
    QueueDeclareOk,
)
from tests.core.conftest import RecordingSink
from tests.server._client import TestClient


@pytest.fixture
def service(broker: Broker, clock: Clock) -> Iterator[DeadlineService]:
    """A running sweeper without a server (nothing to flush)."""
    service = DeadlineService(broker, clock)
    service.startService()
    yield service
    if service.running:
        service.stopService()
    assert clock.getDelayedCalls() == []


@pytest.fixture
def ch(broker: Broker) -> Channel:
    """Channel 1 of a guest connection, recording what it gets."""
    return broker.connect().open_channel(1, RecordingSink())


def _publish(
    ch: Channel, clock: Clock, queue: str, expiration: str | None = None, **headers: object
) -> None:
    ch.connection.broker.advance(clock.seconds())
    properties = BasicProperties(expiration=expiration, headers=dict(headers) or None)
    exchange = "delayed" if "x-delay" in headers else ""
    ch.basic_publish(exchange, queue, properties, b"m", now=clock.seconds())


def _count(ch: Channel, queue: str = "q") -> int:
    return ch.queue_declare(queue, passive=True)[1]


def test_one_timer_for_the_earliest_deadline(
    service: DeadlineService, clock: Clock, ch: Channel
) -> None:
    """However many messages have a TTL, one delayed call is armed, for the earliest."""
    ch.queue_declare("q")
    for expiration in ("5000", "3000", "9000", "3000", "4000"):
        _publish(ch, clock, "q", expiration)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == 3.0
    clock.advance(3.0)
    assert _count(ch) == 3
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == 4.0
    clock.advance(6.0)
    assert _count(ch) == 0
    assert clock.getDelayedCalls() == []


def test_rearmed_for_an_earlier_deadline(
    service: DeadlineService, clock: Clock, ch: Channel
) -> None:
    """A new deadline earlier than the armed one re-arms the single timer."""
    ch.queue_declare("q")
    _publish(ch, clock, "q", "10000")
    assert service.armed_for == 10.0
    clock.advance(1.0)
    _publish(ch, clock, "q", "500")
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == 1.5
    clock.advance(0.5)
    assert _count(ch) == 1
    assert service.armed_for == 10.0


def test_started_with_deadlines_already_due(broker: Broker, clock: Clock, ch: Channel) -> None:
    """Deadlines made before the service starts are armed on start."""
    ch.queue_declare("q", arguments={"x-message-ttl": 100})
    _publish(ch, clock, "q")
    service = DeadlineService(broker, clock)
    service.startService()
    clock.advance(0.1)
    assert _count(ch) == 0
    service.stopService()


class _Exploding:
    """A deadline task that raises (a bug somewhere in the core)."""

    def live(self) -> bool:
        return True

    def fire(self, now: float) -> None:
        raise ZeroDivisionError("boom")


def test_sweeper_survives_a_raising_task(
    service: DeadlineService,
    clock: Clock,
    broker: Broker,
    ch: Channel,
    expected_failures: list[type[BaseException]],
) -> None:
    """A raising deadline is logged and dropped; the timer keeps running for the rest."""
    expected_failures.append(ZeroDivisionError)
    ch.queue_declare("q")
    broker.schedule.push(1.0, _Exploding())
    _publish(ch, clock, "q", "1000")
    _publish(ch, clock, "q", "2000")
    clock.advance(1.0)
    clock.advance(0.0)
    assert _count(ch) == 1
    clock.advance(1.0)
    assert _count(ch) == 0


def test_no_delayed_calls_after_stop(service: DeadlineService, clock: Clock, ch: Channel) -> None:
    """stopService cancels the timer and stops listening for earlier deadlines."""
    ch.queue_declare("q")
    _publish(ch, clock, "q", "1000")
    service.stopService()
    assert clock.getDelayedCalls() == []
    _publish(ch, clock, "q", "10")
    assert clock.getDelayedCalls() == []


def test_delayed_message_routed_at_due_time(
    service: DeadlineService, clock: Clock, ch: Channel
) -> None:
    """A delayed message is routed when due (well within 50 ms), by the one timer."""
    ch.exchange_declare("delayed", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    ch.queue_declare("q")
    ch.queue_bind("q", "delayed", "q")
    clock.advance(100.0)
    _publish(ch, clock, "q", **{"x-delay": 1500})
    _publish(ch, clock, "q", **{"x-delay": 700})
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(100.7)
    clock.advance(0.7)
    assert _count(ch) == 1
    clock.advance(0.8)
    assert _count(ch) == 1 + 1


def test_retry_backoff_through_the_service(
    service: DeadlineService, clock: Clock, ch: Channel
) -> None:
    """A nacked message held by x-retry-backoff comes back when the timer fires."""
    ch.queue_declare("q", arguments={"x-retry-backoff": {"type": "fixed", "min": 250}})
    _publish(ch, clock, "q")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_nack(got.delivery_tag, requeue=True)
    assert ch.basic_get("q") is None
    clock.advance(0.25)
    assert ch.basic_get("q", no_ack=True) is not None


# -- through the server ------------------------------------------------------------------


def test_consumer_timeout_closes_the_channel_through_the_server(clock: Clock) -> None:
    """D8 end to end in memory: the sweeper closes the slow channel with 406 and the
    requeued message is written to another consumer in the same sweep."""
    broker = Broker()
    factory = BrokerFactory(broker, clock)
    service = DeadlineService(broker, clock, factory)
    service.startService()
    slow, other = TestClient(factory), TestClient(factory)
    for client in (slow, other):
        client.handshake(heartbeat=0)
        client.open_channel(1)
    slow.send(1, QueueDeclare("q", arguments={"x-consumer-timeout": 5000}))
    slow.expect(QueueDeclareOk, 1)
    slow.send(1, BasicConsume("q", "slow"))
    slow.expect(BasicConsumeOk, 1)
    slow.publish(1, b"job", routing_key="q")
    assert isinstance(slow.methods()[0], BasicDeliver)
    clock.advance(1.0)
    other.send(1, BasicConsume("q", "other"))
    other.expect(BasicConsumeOk, 1)
    clock.advance(3.999)
    assert slow.received() == []
    clock.advance(0.001)
    close = slow.expect(ChannelClose, 1)
    assert close.reply_code == 406
    assert close.reply_text.startswith(
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out."
        " Timeout value used: 5000 ms."
    )
    deliver = other.expect(BasicDeliver, 1)
    assert deliver.redelivered
    slow.send(1, ChannelCloseOk())
    other.send(1, BasicAck(deliver.delivery_tag))
    service.stopService()
    for client in (slow, other):
        client.disconnect()
    factory.stopFactory()
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_expiry_output_is_flushed_by_the_sweep(clock: Clock) -> None:
    """A dead-lettered expiry delivered to a consumer is written at the end of the sweep."""
    broker = Broker()
    factory = BrokerFactory(broker, clock)
    service = DeadlineService(broker, clock, factory)
    service.startService()
    client = TestClient(factory)
    client.handshake(heartbeat=0)
    client.open_channel(1)
    client.send(1, QueueDeclare("dlq"))
    client.expect(QueueDeclareOk, 1)
    client.send(
        1,
        QueueDeclare(
            "q",
            arguments={
                "x-message-ttl": 200,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "dlq",
            },
        ),
    )
    client.expect(QueueDeclareOk, 1)
    client.send(1, BasicConsume("dlq", "d", no_ack=True))
    client.expect(BasicConsumeOk, 1)
    client.publish(1, b"late", routing_key="q")
    clock.advance(0.2)
    commands = client.received()
    assert [type(c.method) for c in commands] == [BasicDeliver]
    assert commands[0].body == b"late"
    assert commands[0].properties.headers["x-death"][0]["reason"] == "expired"
    service.stopService()
    client.disconnect()
    factory.stopFactory()
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


# -- the twistd plugin ---------------------------------------------------------------------


def _options(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_make_service_order_and_consumer_timeout(tmp_path: Path) -> None:
    """makeService puts the sweeper before the listeners (which stop first) and passes
    --consumer-timeout to the broker; stopping leaves no delayed calls."""
    reactor = MemoryReactorClock()
    service = makeService(
        _options("--listen", "tcp:0", "--data-dir", str(tmp_path), "--consumer-timeout", "60000"),
        reactor=reactor,
    )
    children = list(service)
    sweeper = service.getServiceNamed("deadlines")
    assert isinstance(sweeper, DeadlineService)
    assert children.index(sweeper) < children.index(service.getServiceNamed("tcp:0"))
    service.startService()
    factory = reactor.tcpServers[0][1]
    assert isinstance(factory, BrokerFactory)
    assert isinstance(factory.broker, Broker)
    assert factory.broker.consumer_timeout == 60.0
    service.stopService()
    assert reactor.getDelayedCalls() == []


def test_consumer_timeout_option_defaults_and_checks() -> None:
    """--consumer-timeout defaults to 30 minutes in ms; negative is a usage error."""
    assert _options()["consumer-timeout"] == 1_800_000
    assert _options("--consumer-timeout", "0")["consumer-timeout"] == 0
    with pytest.raises(usage.UsageError, match="--consumer-timeout must be from 0"):
        _options("--consumer-timeout", "-1")
