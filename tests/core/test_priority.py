"""Priority queues (``x-max-priority``): order, requeue, TTL and dead-lettering."""

from __future__ import annotations

from amqplike.core import Broker, Channel

from .conftest import RecordingSink, send


def _bodies(ch: Channel, queue: str) -> list[bytes]:
    out = []
    while (got := ch.basic_get(queue, no_ack=True)) is not None:
        out.append(got.message.body)
    return out


def test_higher_priority_first_fifo_within(ch: Channel) -> None:
    """Higher priorities first; the same priority in publish order; no priority is 0."""
    ch.queue_declare("q", arguments={"x-max-priority": 10})
    for body, priority in [(b"a0", None), (b"b5", 5), (b"c1", 1), (b"d5", 5), (b"e0", 0)]:
        send(ch, "q", body, priority=priority)
    assert _bodies(ch, "q") == [b"b5", b"d5", b"c1", b"a0", b"e0"]


def test_priority_above_max_is_capped(ch: Channel) -> None:
    """A priority above x-max-priority counts as the maximum (FIFO with it)."""
    ch.queue_declare("q", arguments={"x-max-priority": 3})
    send(ch, "q", b"three", priority=3)
    send(ch, "q", b"nine", priority=9)
    send(ch, "q", b"one", priority=1)
    assert _bodies(ch, "q") == [b"three", b"nine", b"one"]


def test_requeue_keeps_original_order_within_priority(ch: Channel, sink: RecordingSink) -> None:
    """Requeued messages go back to their place in their priority."""
    ch.queue_declare("q", arguments={"x-max-priority": 5})
    for body, priority in [(b"h1", 5), (b"h2", 5), (b"l1", 1), (b"h3", 5)]:
        send(ch, "q", body, priority=priority)
    ch.basic_qos(prefetch_count=2)
    ch.basic_consume("q", "c")
    assert sink.bodies == [b"h1", b"h2"]
    sink.clear()
    ch.basic_nack(0, multiple=True, requeue=True)
    assert sink.bodies == [b"h1", b"h2"]
    ch.basic_cancel("c")
    ch.basic_recover()
    assert _bodies(ch, "q") == [b"h1", b"h2", b"h3", b"l1"]


def test_priority_with_ttl_and_dead_lettering(broker: Broker, ch: Channel) -> None:
    """TTL expires messages of any priority where they sit, dead-lettered 'expired'."""
    ch.queue_declare("dlq")
    ch.queue_declare(
        "q",
        arguments={
            "x-max-priority": 9,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        },
    )
    send(ch, "q", b"low-keep", priority=1)
    send(ch, "q", b"high-expire", priority=9, expiration="100")
    send(ch, "q", b"mid-expire", priority=5, expiration="50")
    send(ch, "q", b"high-keep", priority=9)
    broker.expire(0.1)
    assert _bodies(ch, "dlq") == [b"mid-expire", b"high-expire"]
    assert _bodies(ch, "q") == [b"high-keep", b"low-keep"]


def test_priority_drop_head_drops_next_to_deliver(ch: Channel) -> None:
    """drop-head on a priority queue drops what would be delivered next."""
    ch.queue_declare("q", arguments={"x-max-priority": 9, "x-max-length": 2})
    send(ch, "q", b"low", priority=1)
    send(ch, "q", b"high", priority=9)
    send(ch, "q", b"mid", priority=5)
    assert _bodies(ch, "q") == [b"mid", b"low"]


def test_consumers_get_priority_order(ch: Channel, sink: RecordingSink) -> None:
    """Consumers see the priority order too."""
    ch.queue_declare("q", arguments={"x-max-priority": 2})
    for i, priority in enumerate([0, 2, 1, 2, 0]):
        send(ch, "q", str(i).encode(), priority=priority)
    ch.basic_consume("q", "c", no_ack=True)
    assert sink.bodies == [b"1", b"3", b"2", b"0", b"4"]
