"""basic.consume/cancel/get/qos and channel.flow: who gets which message when."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel, Connection
from amqplike.errors import ChannelError, HardError

from .conftest import RecordingSink, publish


def fill(ch: Channel, queue: str, n: int) -> None:
    for i in range(n):
        publish(ch, queue, str(i).encode())


def test_consume_delivers_waiting_messages(ch: Channel, sink: RecordingSink) -> None:
    """A new consumer receives the messages already in the queue, in order, tags from 1."""
    ch.queue_declare("q")
    fill(ch, "q", 3)
    ch.basic_consume("q", "c")
    assert sink.deliveries == [("c", 1, False, b"0"), ("c", 2, False, b"1"), ("c", 3, False, b"2")]


def test_publish_delivers_to_consumer_synchronously(ch: Channel, sink: RecordingSink) -> None:
    """A publish to a queue with a consumer delivers within the publish call."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    publish(ch, "q", b"m")
    assert sink.deliveries == [("c", 1, False, b"m")]


def test_delivered_message_keeps_exchange_and_key(ch: Channel, sink: RecordingSink) -> None:
    """The delivered Message carries the exchange and routing key it was published with."""
    ch.queue_declare("q")
    ch.queue_bind("q", "amq.topic", "a.*")
    ch.basic_consume("q", "c")
    publish(ch, "a.b", exchange="amq.topic")
    message = sink.events[0][4]
    assert (message.exchange, message.routing_key) == ("amq.topic", "a.b")


def test_consume_with_dispatch_false_waits_for_dispatch(ch: Channel, sink: RecordingSink) -> None:
    """With dispatch=False nothing is delivered until Channel.dispatch (after consume-ok)."""
    ch.queue_declare("q")
    fill(ch, "q", 2)
    ch.basic_consume("q", "c", dispatch=False)
    assert sink.deliveries == []
    ch.dispatch()
    assert sink.bodies == [b"0", b"1"]


def test_queue_without_consumer_keeps_messages(ch: Channel) -> None:
    """Messages wait in a queue that has no consumer."""
    ch.queue_declare("q")
    fill(ch, "q", 4)
    assert ch.queue_declare("q")[1] == 4


def test_server_named_consumer_tag(ch: Channel) -> None:
    """An empty consumer tag gets a fresh amq.ctag- tag."""
    ch.queue_declare("q")
    t1 = ch.basic_consume("q")
    t2 = ch.basic_consume("q")
    assert t1.startswith("amq.ctag-") and t1 != t2


def test_consume_missing_queue_is_404(ch: Channel) -> None:
    """basic.consume on a missing queue is 404."""
    with pytest.raises(ChannelError) as e:
        ch.basic_consume("nope")
    assert e.value.reply_code == 404


def test_reusing_consumer_tag_is_hard_530(ch: Channel) -> None:
    """Reusing a consumer tag on the same channel is a connection error 530."""
    ch.queue_declare("q")
    ch.basic_consume("q", "dup")
    with pytest.raises(HardError) as e:
        ch.basic_consume("q", "dup")
    assert e.value.reply_text == "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"


def test_same_consumer_tag_on_two_channels_is_fine(conn: Connection) -> None:
    """Consumer tags are per channel."""
    a = conn.open_channel(1, RecordingSink())
    b = conn.open_channel(2, RecordingSink())
    a.queue_declare("q")
    a.basic_consume("q", "t")
    b.basic_consume("q", "t")


def test_exclusive_consumer_blocks_others(ch: Channel) -> None:
    """With an exclusive consumer on a queue, another consume is 403."""
    ch.queue_declare("q")
    ch.basic_consume("q", "ex", exclusive=True)
    with pytest.raises(ChannelError) as e:
        ch.basic_consume("q", "other")
    assert e.value.reply_text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"


def test_exclusive_consume_refused_when_queue_has_consumers(ch: Channel) -> None:
    """An exclusive consume on a queue that already has consumers is 403."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    with pytest.raises(ChannelError) as e:
        ch.basic_consume("q", "ex", exclusive=True)
    assert e.value.reply_code == 403


def test_exclusive_consumer_cancel_frees_queue(ch: Channel) -> None:
    """After the exclusive consumer is cancelled, others may consume."""
    ch.queue_declare("q")
    ch.basic_consume("q", "ex", exclusive=True)
    ch.basic_cancel("ex")
    ch.basic_consume("q", "c")


def test_cancel_unknown_tag_is_ok(ch: Channel) -> None:
    """basic.cancel of an unknown tag is not an error (RabbitMQ)."""
    ch.basic_cancel("never")


def test_cancel_stops_deliveries(ch: Channel, sink: RecordingSink) -> None:
    """A cancelled consumer gets nothing more; messages wait in the queue."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    ch.basic_cancel("c")
    publish(ch, "q")
    assert sink.deliveries == []
    assert ch.queue_declare("q")[1] == 1


def test_round_robin_between_consumers(ch: Channel, sink: RecordingSink) -> None:
    """Messages are shared round-robin among a queue's consumers."""
    ch.queue_declare("q")
    ch.basic_consume("q", "a")
    ch.basic_consume("q", "b")
    ch.basic_consume("q", "c")
    fill(ch, "q", 6)
    assert [d[0] for d in sink.deliveries] == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_consumer_without_credit(ch: Channel, sink: RecordingSink) -> None:
    """A consumer at its prefetch limit is skipped; the others share the messages."""
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("q", "a")
    ch.basic_qos(prefetch_count=0)
    ch.basic_consume("q", "b")
    fill(ch, "q", 4)
    assert [d[0] for d in sink.deliveries] == ["a", "b", "b", "b"]


def test_prefetch_limits_unacked_per_consumer(ch: Channel, sink: RecordingSink) -> None:
    """With prefetch_count=2 a consumer holds at most 2 unacked; an ack lets the next one in."""
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=2)
    ch.basic_consume("q", "c")
    fill(ch, "q", 5)
    assert sink.bodies == [b"0", b"1"]
    ch.basic_ack(1)
    assert sink.bodies == [b"0", b"1", b"2"]
    ch.basic_ack(3, multiple=True)
    assert sink.bodies == [b"0", b"1", b"2", b"3", b"4"]


def test_per_consumer_qos_applies_to_later_consumers_only(ch: Channel, sink: RecordingSink) -> None:
    """basic.qos(global=False) does not change consumers that already exist (RabbitMQ)."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    ch.basic_qos(prefetch_count=1)
    fill(ch, "q", 3)
    assert len(sink.deliveries) == 3


def test_global_qos_shared_by_channel_consumers(ch: Channel, sink: RecordingSink) -> None:
    """basic.qos(global=True) is one window for all the channel's consumers."""
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    ch.basic_qos(prefetch_count=3, global_=True)
    ch.basic_consume("q1", "c1")
    ch.basic_consume("q2", "c2")
    fill(ch, "q1", 2)
    fill(ch, "q2", 2)
    assert len(sink.deliveries) == 3
    ch.basic_ack(1)
    assert len(sink.deliveries) == 4


def test_global_qos_frees_credit_for_consumer_on_other_queue(
    ch: Channel, sink: RecordingSink
) -> None:
    """Acking a delivery of one consumer lets another consumer blocked by the global window go."""
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    ch.basic_qos(prefetch_count=1, global_=True)
    ch.basic_consume("q1", "c1")
    ch.basic_consume("q2", "c2")
    publish(ch, "q1", b"a")
    publish(ch, "q2", b"b")
    assert sink.bodies == [b"a"]
    ch.basic_ack(1)
    assert sink.deliveries[-1][0] == "c2"


def test_qos_increase_delivers_waiting_messages(ch: Channel, sink: RecordingSink) -> None:
    """Raising the global window delivers messages that were held back."""
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=1, global_=True)
    ch.basic_consume("q", "c")
    fill(ch, "q", 3)
    assert len(sink.deliveries) == 1
    ch.basic_qos(prefetch_count=0, global_=True)
    assert len(sink.deliveries) == 3


def test_qos_prefetch_size_not_implemented(ch: Channel) -> None:
    """A nonzero prefetch_size is 540 NOT_IMPLEMENTED, as RabbitMQ."""
    with pytest.raises(HardError) as e:
        ch.basic_qos(prefetch_size=1000)
    assert e.value.reply_code == 540


def test_no_ack_consumer_ignores_prefetch(ch: Channel, sink: RecordingSink) -> None:
    """A no_ack consumer gets everything; its deliveries are already settled."""
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("q", "c", no_ack=True)
    fill(ch, "q", 5)
    assert len(sink.deliveries) == 5
    assert ch.unacked_count == 0
    with pytest.raises(ChannelError):
        ch.basic_ack(1)


def test_flow_pauses_and_resumes_deliveries(ch: Channel, sink: RecordingSink) -> None:
    """channel.flow(False) holds deliveries; flow(True) sends what waited."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    assert ch.flow(False) is False
    fill(ch, "q", 2)
    assert sink.deliveries == []
    assert ch.flow(True) is True
    assert sink.bodies == [b"0", b"1"]


def test_flow_paused_channel_consumers_skipped(conn: Connection) -> None:
    """While one channel is paused, other channels' consumers get the messages."""
    sa, sb = RecordingSink(), RecordingSink()
    a = conn.open_channel(1, sa)
    b = conn.open_channel(2, sb)
    a.queue_declare("q")
    a.basic_consume("q", "a")
    b.basic_consume("q", "b")
    a.flow(False)
    fill(a, "q", 3)
    assert (len(sa.deliveries), len(sb.deliveries)) == (0, 3)


def test_get_returns_message_and_remaining_count(ch: Channel) -> None:
    """basic.get returns the head message, its tag and how many remain."""
    ch.queue_declare("q")
    fill(ch, "q", 3)
    got = ch.basic_get("q")
    assert got is not None
    assert (got.delivery_tag, got.redelivered, got.message.body, got.message_count) == (
        1, False, b"0", 2,
    )


def test_get_empty_returns_none(ch: Channel) -> None:
    """basic.get on an empty queue returns None (get-empty)."""
    ch.queue_declare("q")
    assert ch.basic_get("q") is None


def test_get_missing_queue_is_404(ch: Channel) -> None:
    """basic.get on a missing queue is 404."""
    with pytest.raises(ChannelError) as e:
        ch.basic_get("nope")
    assert e.value.reply_code == 404


def test_get_no_ack_settles_immediately(ch: Channel) -> None:
    """basic.get(no_ack) leaves nothing to ack."""
    ch.queue_declare("q")
    publish(ch, "q")
    got = ch.basic_get("q", no_ack=True)
    assert got is not None
    assert ch.unacked_count == 0
    with pytest.raises(ChannelError):
        ch.basic_ack(got.delivery_tag)


def test_get_and_deliveries_share_tag_sequence(ch: Channel, sink: RecordingSink) -> None:
    """Delivery tags are per channel and keep increasing across get and consume."""
    ch.queue_declare("q")
    fill(ch, "q", 2)
    got = ch.basic_get("q")
    assert got is not None and got.delivery_tag == 1
    ch.basic_consume("q", "c")
    assert sink.tags() == [2]


def test_get_ignores_prefetch(ch: Channel) -> None:
    """basic.get is not limited by basic.qos."""
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=1, global_=True)
    fill(ch, "q", 2)
    assert ch.basic_get("q") is not None
    assert ch.basic_get("q") is not None


def test_delivery_tags_per_channel(broker: Broker, conn: Connection) -> None:
    """Two channels number their deliveries independently from 1."""
    sa, sb = RecordingSink(), RecordingSink()
    a = conn.open_channel(1, sa)
    b = conn.open_channel(2, sb)
    a.queue_declare("q")
    a.basic_consume("q", "a")
    b.basic_consume("q", "b")
    fill(a, "q", 4)
    assert sa.tags() == [1, 2]
    assert sb.tags() == [1, 2]


def test_same_message_in_two_queues_tracked_separately(ch: Channel, sink: RecordingSink) -> None:
    """A fanned-out message requeued in one queue is redelivered there only."""
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    ch.queue_bind("q1", "amq.fanout")
    ch.queue_bind("q2", "amq.fanout")
    publish(ch, "", b"m", exchange="amq.fanout")
    g1 = ch.basic_get("q1")
    assert g1 is not None
    ch.basic_reject(g1.delivery_tag, requeue=True)
    g1b = ch.basic_get("q1")
    g2 = ch.basic_get("q2")
    assert g1b is not None and g2 is not None
    # The redelivery is a copy carrying x-delivery-count; the shared message is untouched.
    assert g1b.message.body == g2.message.body == b"m"
    assert g1b.message.properties.headers == {"x-delivery-count": 1}
    assert g2.message.properties.headers is None
    assert (g1b.redelivered, g2.redelivered) == (True, False)
