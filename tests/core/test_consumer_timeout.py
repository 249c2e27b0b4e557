"""Consumer ack timeout: queue, consumer and broker settings; closing the channel."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel, Connection
from amqplike.errors import PRECONDITION_FAILED, ChannelError

from .conftest import RecordingSink, send


def _closed(sink: RecordingSink) -> list[tuple[int, str]]:
    return [(e[1], e[2]) for e in sink.events if e[0] == "closed"]


def _text(channel: int, ms: int) -> str:
    return (
        f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out."
        f" Timeout value used: {ms} ms. This timeout value can be configured, see"
        " consumers doc guide to learn more"
    )


def test_overdue_delivery_closes_channel_and_requeues(broker: Broker, conn: Connection) -> None:
    """D8: a delivery unacked past x-consumer-timeout closes the channel 406; another consumer gets it."""
    slow_sink, fast_sink = RecordingSink(), RecordingSink()
    slow = conn.open_channel(1, slow_sink)
    fast = conn.open_channel(2, fast_sink)
    slow.queue_declare("q", arguments={"x-consumer-timeout": 5000})
    slow.basic_qos(prefetch_count=1)
    slow.basic_consume("q", "slow")
    send(slow, "q", b"job", now=0.0)
    fast.basic_consume("q", "fast")
    assert slow_sink.bodies == [b"job"] and fast_sink.bodies == []
    broker.expire(4.999)
    assert slow.is_open
    broker.expire(5.0)
    assert not slow.is_open
    assert _closed(slow_sink) == [(PRECONDITION_FAILED, _text(1, 5000))]
    assert fast_sink.deliveries == [("fast", 1, True, b"job")]


def test_acked_in_time_keeps_channel(broker: Broker, ch: Channel, sink: RecordingSink) -> None:
    """Deliveries acked before their deadline close nothing; later ones get their own deadline."""
    ch.queue_declare("q", arguments={"x-consumer-timeout": 1000})
    ch.basic_consume("q", "c")
    send(ch, "q", now=0.0)
    broker.advance(0.9)
    ch.basic_ack(1)
    send(ch, "q", now=0.9)
    broker.expire(1.5)
    assert ch.is_open
    broker.expire(1.9)
    assert not ch.is_open
    assert _closed(sink) == [(PRECONDITION_FAILED, _text(1, 1000))]


def test_consumer_argument_overrides_queue(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """The consumer's x-consumer-timeout wins over the queue's; 0 disables the timeout."""
    ch.queue_declare("q", arguments={"x-consumer-timeout": 1000})
    ch.basic_consume("q", "c", arguments={"x-consumer-timeout": 0})
    send(ch, "q")
    broker.expire(3600.0)
    assert ch.is_open and sink.bodies == [b"x"]


def test_broker_default(conn: Connection) -> None:
    """Without settings the broker's default applies (30 minutes unless configured)."""
    broker = Broker(consumer_timeout=60.0)
    sink = RecordingSink()
    ch = broker.connect().open_channel(1, sink)
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    send(ch, "q")
    broker.expire(59.0)
    assert ch.is_open
    broker.expire(60.0)
    assert _closed(sink) == [(PRECONDITION_FAILED, _text(1, 60000))]


def test_default_is_thirty_minutes(broker: Broker, ch: Channel) -> None:
    """RabbitMQ's default consumer_timeout is 30 minutes."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    send(ch, "q")
    broker.expire(1799.0)
    assert ch.is_open
    broker.expire(1800.0)
    assert not ch.is_open


def test_no_ack_consumers_are_not_timed(broker: Broker, ch: Channel) -> None:
    """no_ack deliveries are settled at once: nothing to time out, nothing scheduled."""
    ch.queue_declare("q", arguments={"x-consumer-timeout": 10})
    ch.basic_consume("q", "c", no_ack=True)
    send(ch, "q")
    assert broker.next_deadline() is None


def test_basic_get_deliveries_are_timed(broker: Broker, ch: Channel, sink: RecordingSink) -> None:
    """An unacked basic.get delivery is held to the queue's timeout too."""
    ch.queue_declare("q", arguments={"x-consumer-timeout": 2000})
    send(ch, "q")
    assert ch.basic_get("q") is not None
    broker.expire(2.0)
    assert _closed(sink) == [(PRECONDITION_FAILED, _text(1, 2000))]


def test_shortest_timeout_of_mixed_consumers(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """On a channel with several timeouts each delivery is held to its own consumer's."""
    ch.queue_declare("slow", arguments={"x-consumer-timeout": 10_000})
    ch.queue_declare("quick", arguments={"x-consumer-timeout": 1000})
    ch.basic_consume("slow", "s")
    ch.basic_consume("quick", "q")
    send(ch, "slow", now=0.0)
    send(ch, "quick", now=0.5)
    broker.expire(1.499)
    assert ch.is_open
    broker.expire(1.5)
    assert _closed(sink) == [(PRECONDITION_FAILED, _text(1, 1000))]


def test_one_check_per_channel(broker: Broker, ch: Channel) -> None:
    """Deliveries add no timer: the schedule holds one check however many are unacked."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    for i in range(100):
        send(ch, "q", now=float(i))
    assert len(broker.schedule) == 1


def test_invalid_consumer_argument(ch: Channel) -> None:
    """A bad x-consumer-timeout consumer argument is 406."""
    ch.queue_declare("q")
    with pytest.raises(ChannelError) as e:
        ch.basic_consume("q", "c", arguments={"x-consumer-timeout": "soon"})
    assert e.value.reply_text == (
        "PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'q' in vhost '/':"
        " {unacceptable_type,longstr}"
    )


def test_sink_without_channel_closed_still_closes(broker: Broker) -> None:
    """A sink without the optional channel_closed method just sees the channel close."""

    class MinimalSink:
        def deliver(self, *args: object) -> None: ...
        def returned(self, *args: object) -> None: ...
        def confirmed(self, *args: object) -> None: ...
        def consumer_cancelled(self, *args: object) -> None: ...

    ch = broker.connect().open_channel(1, MinimalSink())
    ch.queue_declare("q", arguments={"x-consumer-timeout": 10})
    ch.basic_consume("q", "c")
    send(ch, "q")
    broker.expire(1.0)
    assert not ch.is_open
    assert ch.vhost.queues["q"].message_count == 1
