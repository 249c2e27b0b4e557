"""Message TTL (``x-message-ttl``, ``expiration``) and queue expiry (``x-expires``)."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel
from amqplike.errors import PRECONDITION_FAILED, ChannelError

from .conftest import RecordingSink, send


def _consume_bodies(ch: Channel, sink: RecordingSink, queue: str) -> list[bytes]:
    ch.basic_consume(queue, "c", no_ack=True)
    return sink.bodies


def test_queue_ttl_expires_at_deadline(broker: Broker, ch: Channel) -> None:
    """x-message-ttl: the message is there just before the deadline and gone at it."""
    ch.queue_declare("q", arguments={"x-message-ttl": 1000})
    send(ch, "q", now=10.0)
    assert broker.next_deadline() == 11.0
    broker.expire(10.999)
    assert ch.queue_declare("q", passive=True)[1] == 1
    broker.expire(11.0)
    assert ch.queue_declare("q", passive=True)[1] == 0
    assert broker.next_deadline() is None


def test_message_expiration_property(broker: Broker, ch: Channel) -> None:
    """A per-message expiration (ms as a string) expires the message on a plain queue."""
    ch.queue_declare("q")
    send(ch, "q", now=0.0, expiration="500")
    broker.expire(0.5)
    assert ch.queue_declare("q", passive=True)[1] == 0


@pytest.mark.parametrize(
    ("queue_ttl", "expiration", "gone_at"), [(1000, "200", 0.2), (200, "1000", 0.2)]
)
def test_shorter_ttl_wins(
    broker: Broker, ch: Channel, queue_ttl: int, expiration: str, gone_at: float
) -> None:
    """The shorter of x-message-ttl and expiration applies."""
    ch.queue_declare("q", arguments={"x-message-ttl": queue_ttl})
    send(ch, "q", expiration=expiration)
    broker.expire(gone_at - 0.001)
    assert ch.queue_declare("q", passive=True)[1] == 1
    broker.expire(gone_at)
    assert ch.queue_declare("q", passive=True)[1] == 0


def test_expiry_in_the_middle_of_the_queue(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """A message expires even when not at the head; the others keep their order."""
    ch.queue_declare("q")
    send(ch, "q", b"a")
    send(ch, "q", b"b", expiration="100")
    send(ch, "q", b"c")
    send(ch, "q", b"d", expiration="100000")
    broker.expire(0.1)
    assert ch.queue_declare("q", passive=True)[1] == 3
    assert _consume_bodies(ch, sink, "q") == [b"a", b"c", b"d"]


def test_never_delivered_after_expiry_without_a_sweep(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """Dispatch checks expiry itself: a late sweeper does not let an expired message out."""
    ch.queue_declare("q", arguments={"x-message-ttl": 100})
    send(ch, "q", b"old", now=0.0)
    send(ch, "q", b"new", now=0.15)
    broker.advance(0.2)  # time moved on, the sweeper has not run yet
    assert _consume_bodies(ch, sink, "q") == [b"new"]
    assert ch.queue_declare("q", passive=True)[1] == 0


def test_basic_get_skips_expired(broker: Broker, ch: Channel) -> None:
    """basic.get never returns an expired message."""
    ch.queue_declare("q")
    send(ch, "q", b"a", expiration="10")
    broker.advance(1.0)
    assert ch.basic_get("q") is None


def test_ttl_zero_delivered_only_when_a_consumer_can_take_it(
    ch: Channel, sink: RecordingSink
) -> None:
    """TTL 0: delivered at once if a consumer has credit, otherwise expired at once."""
    ch.queue_declare("q", arguments={"x-message-ttl": 0})
    send(ch, "q", b"nobody")
    assert ch.queue_declare("q", passive=True)[1] == 0
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("q", "c")
    send(ch, "q", b"taken")
    send(ch, "q", b"no credit")
    assert sink.bodies == [b"taken"]
    assert ch.queue_declare("q", passive=True)[1] == 0


def test_requeued_after_expiry_is_dropped(broker: Broker, ch: Channel, sink: RecordingSink) -> None:
    """A delivered message that comes back after its TTL is not redelivered."""
    ch.queue_declare("q", arguments={"x-message-ttl": 100})
    send(ch, "q", b"a", now=0.0)
    ch.basic_consume("q", "c")
    broker.expire(0.5)  # delivered, so the sweeper leaves it alone
    sink.clear()
    ch.basic_nack(1, requeue=True)
    assert sink.bodies == []
    assert ch.queue_declare("q", passive=True)[1] == 0


def test_requeued_before_expiry_expires_later(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """A message requeued before its TTL is ready again and still expires on time."""
    ch.queue_declare("q", arguments={"x-message-ttl": 1000})
    send(ch, "q", b"a", now=0.0)
    tag = ch.basic_consume("q", "c")
    broker.advance(0.5)
    ch.basic_cancel(tag)
    ch.basic_nack(1, requeue=True)
    assert ch.queue_declare("q", passive=True)[1] == 1
    broker.expire(1.0)
    assert ch.queue_declare("q", passive=True)[1] == 0


@pytest.mark.parametrize(
    ("expiration", "reason"),
    [
        ("abc", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("10x", '{leftover_string,"x"}'),
        ("4294967296", "{value_too_large,4294967296}"),
    ],
)
def test_invalid_expiration_is_406(ch: Channel, expiration: str, reason: str) -> None:
    """An expiration that is not a number of ms closes the channel 406, as RabbitMQ does."""
    ch.queue_declare("q")
    with pytest.raises(ChannelError) as e:
        send(ch, "q", expiration=expiration)
    assert e.value.reply_code == PRECONDITION_FAILED
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}"
    )


def test_sweep_cost_follows_what_expires(broker: Broker, ch: Channel) -> None:
    """Messages without TTL put nothing on the schedule; a sweep touches only the expiring."""
    ch.queue_declare("q")
    for _ in range(1000):
        send(ch, "q")
    for _ in range(5):
        send(ch, "q", expiration="10")
    assert len(broker.schedule) == 5
    assert broker.expire(1.0) == 5
    assert ch.queue_declare("q", passive=True)[1] == 1000


def test_consumed_ttl_messages_do_not_pile_up(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """Deadlines of messages consumed long before their TTL are compacted away."""
    ch.queue_declare("q", arguments={"x-message-ttl": 3_600_000})
    ch.basic_consume("q", "c")
    for i in range(20_000):
        send(ch, "q", now=i / 1000)
        ch.basic_ack(i + 1)
    assert len(broker.schedule) < 3000


def test_expired_gone_entries_are_compacted(broker: Broker, ch: Channel) -> None:
    """Mid-queue expiries do not keep their messages in memory until they reach the head."""
    ch.queue_declare("q")
    send(ch, "q", b"head")
    for _ in range(1000):
        send(ch, "q", expiration="10")
    send(ch, "q", b"tail")
    broker.expire(1.0)
    queue = ch.vhost.queues["q"]
    assert queue.message_count == 2
    assert len(queue._ready) < 100


# -- x-expires ---------------------------------------------------------------------------


def test_unused_queue_expires(broker: Broker, ch: Channel) -> None:
    """x-expires: a queue with no consumers, gets or redeclares for that long is deleted."""
    ch.queue_declare("q", arguments={"x-expires": 1000})
    send(ch, "q", now=0.5)  # publishing is not a use
    broker.expire(0.999)
    assert "q" in ch.vhost.queues
    broker.expire(1.0)
    assert "q" not in ch.vhost.queues


def test_consumer_keeps_queue_alive(broker: Broker, ch: Channel) -> None:
    """A queue with a consumer does not expire; the clock restarts when the last one goes."""
    ch.queue_declare("q", arguments={"x-expires": 1000})
    ch.basic_consume("q", "c")
    broker.expire(5.0)
    assert "q" in ch.vhost.queues
    ch.basic_cancel("c")
    broker.expire(5.999)
    assert "q" in ch.vhost.queues
    broker.expire(6.0)
    assert "q" not in ch.vhost.queues


@pytest.mark.parametrize("use", ["get", "redeclare"])
def test_get_and_redeclare_are_uses(broker: Broker, ch: Channel, use: str) -> None:
    """basic.get and a redeclare restart the x-expires clock."""
    args = {"x-expires": 1000}
    ch.queue_declare("q", arguments=args)
    broker.advance(0.8)
    if use == "get":
        ch.basic_get("q")
    else:
        ch.queue_declare("q", arguments=args)
    broker.expire(1.5)
    assert "q" in ch.vhost.queues
    broker.expire(1.8)
    assert "q" not in ch.vhost.queues
