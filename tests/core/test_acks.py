"""basic.ack/nack/reject/recover, requeue order, and channel/connection close."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel, Connection
from amqplike.errors import ChannelError, HardError

from .conftest import RecordingSink, publish


@pytest.fixture
def five(ch: Channel, sink: RecordingSink) -> Channel:
    """Queue 'q' with messages 0..4 all delivered unacked to consumer 'c' (tags 1..5)."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    for i in range(5):
        publish(ch, "q", str(i).encode())
    assert sink.tags() == [1, 2, 3, 4, 5]
    sink.clear()
    return ch


def redeliver_all(ch: Channel, sink: RecordingSink) -> list[tuple[bytes, bool]]:
    """Consume what is in 'q' with a fresh channel-local consumer; return (body, redelivered)."""
    sink.clear()
    ch.basic_consume("q", "again")
    return [(d[3], d[2]) for d in sink.deliveries]


def test_ack_removes_message(five: Channel, sink: RecordingSink) -> None:
    """An acked delivery is gone: recover does not bring it back."""
    five.basic_ack(1)
    five.basic_recover()
    assert sink.bodies == [b"1", b"2", b"3", b"4"]


def test_ack_multiple_settles_up_to_tag(five: Channel) -> None:
    """ack(multiple) settles every delivery up to and including the tag."""
    five.basic_ack(3, multiple=True)
    assert five.unacked_count == 2
    with pytest.raises(ChannelError):
        five.basic_ack(2)


def test_ack_multiple_zero_settles_all(five: Channel) -> None:
    """ack(0, multiple=True) settles everything outstanding."""
    five.basic_ack(0, multiple=True)
    assert five.unacked_count == 0


def test_ack_unknown_tag_is_406(five: Channel) -> None:
    """Acking a tag never delivered is 406 "unknown delivery tag N"."""
    with pytest.raises(ChannelError) as e:
        five.basic_ack(99)
    assert e.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 99"


def test_double_ack_is_406(five: Channel) -> None:
    """Acking the same tag twice is 406."""
    five.basic_ack(2)
    with pytest.raises(ChannelError) as e:
        five.basic_ack(2)
    assert e.value.reply_code == 406


def test_ack_multiple_with_settled_tag_is_406_and_settles_nothing(five: Channel) -> None:
    """ack(multiple) naming an already-settled tag is 406, as RabbitMQ, and acks nothing."""
    five.basic_ack(3)
    with pytest.raises(ChannelError):
        five.basic_ack(3, multiple=True)
    assert five.unacked_count == 4


def test_ack_zero_without_multiple_is_406(five: Channel) -> None:
    """Tag 0 without multiple names no delivery."""
    with pytest.raises(ChannelError):
        five.basic_ack(0)


def test_reject_requeue_redelivers_with_flag(five: Channel, sink: RecordingSink) -> None:
    """A rejected-with-requeue message comes back redelivered=True."""
    five.basic_cancel("c")
    five.basic_reject(2, requeue=True)
    assert redeliver_all(five, sink) == [(b"1", True)]


def test_reject_without_requeue_discards(five: Channel, sink: RecordingSink) -> None:
    """reject(requeue=False) drops the message."""
    five.basic_cancel("c")
    five.basic_reject(2, requeue=False)
    five.basic_recover()
    assert [b for b, _ in redeliver_all(five, sink)] == [b"0", b"2", b"3", b"4"]


def test_nack_multiple_requeue_keeps_original_order(five: Channel, sink: RecordingSink) -> None:
    """nack(multiple, requeue) puts messages back in their original order."""
    five.basic_cancel("c")
    five.basic_nack(4, multiple=True, requeue=True)
    assert [b for b, _ in redeliver_all(five, sink)] == [b"0", b"1", b"2", b"3"]


def test_requeued_messages_come_before_newer_ones(ch: Channel, sink: RecordingSink) -> None:
    """Requeued messages go back to the head: before messages published after them."""
    ch.queue_declare("q")
    for i in range(4):
        publish(ch, "q", str(i).encode())
    got = [ch.basic_get("q") for _ in range(2)]
    publish(ch, "q", b"4")
    for g in reversed(got):
        assert g is not None
        ch.basic_reject(g.delivery_tag, requeue=True)
    bodies = []
    while (g2 := ch.basic_get("q", no_ack=True)) is not None:
        bodies.append((g2.message.body, g2.redelivered))
    assert bodies == [(b"0", True), (b"1", True), (b"2", False), (b"3", False), (b"4", False)]


def test_requeue_out_of_order_is_restored(five: Channel, sink: RecordingSink) -> None:
    """Rejecting in reverse order still restores enqueue order."""
    five.basic_cancel("c")
    for tag in (5, 2, 4, 1, 3):
        five.basic_reject(tag, requeue=True)
    assert redeliver_all(five, sink) == [(b"0", True), (b"1", True), (b"2", True), (b"3", True), (b"4", True)]


def test_nack_multiple_without_requeue_discards_all(five: Channel, sink: RecordingSink) -> None:
    """nack(multiple, requeue=False) drops every delivery up to the tag."""
    five.basic_cancel("c")
    five.basic_nack(0, multiple=True, requeue=False)
    assert five.queue_declare("q")[1] == 0


def test_requeue_redelivers_to_live_consumer(five: Channel, sink: RecordingSink) -> None:
    """A requeued message is redelivered at once to a consumer with credit."""
    five.basic_nack(1, requeue=True)
    assert sink.deliveries == [("c", 6, True, b"0")]


def test_delivery_count_tracked_per_entry(broker: Broker, ch: Channel) -> None:
    """Each delivery of a queue entry increments its delivery count."""
    ch.queue_declare("q")
    publish(ch, "q")
    for _ in range(3):
        got = ch.basic_get("q")
        assert got is not None
        ch.basic_reject(got.delivery_tag, requeue=True)
    entry = broker.vhosts["/"].queues["q"].pop()
    assert entry is not None and entry.delivery_count == 3


def test_recover_requeues_all_unacked(five: Channel, sink: RecordingSink) -> None:
    """basic.recover(requeue=True) redelivers every unacked delivery, redelivered=True."""
    five.basic_recover(requeue=True)
    assert [(d[2], d[3]) for d in sink.deliveries] == [
        (True, b"0"), (True, b"1"), (True, b"2"), (True, b"3"), (True, b"4"),
    ]
    assert sink.tags() == [6, 7, 8, 9, 10]


def test_recover_without_requeue_not_implemented(five: Channel) -> None:
    """basic.recover(requeue=False) is 540, as RabbitMQ."""
    with pytest.raises(HardError) as e:
        five.basic_recover(requeue=False)
    assert e.value.reply_code == 540


def test_ack_after_cancel_still_works(five: Channel) -> None:
    """Deliveries of a cancelled consumer can still be acked."""
    five.basic_cancel("c")
    five.basic_ack(5, multiple=True)
    assert five.unacked_count == 0


def test_channel_close_requeues_unacked_in_order(conn: Connection, five: Channel) -> None:
    """Closing a channel requeues its unacked deliveries, redelivered, in original order."""
    five.close()
    other = RecordingSink()
    ch2 = conn.open_channel(2, other)
    ch2.basic_consume("q", "c2")
    assert [(d[3], d[2]) for d in other.deliveries] == [
        (b"0", True), (b"1", True), (b"2", True), (b"3", True), (b"4", True),
    ]


def test_channel_close_requeues_to_other_consumer(conn: Connection, five: Channel) -> None:
    """Messages requeued by a closing channel go to another channel's consumer at once."""
    other = RecordingSink()
    ch2 = conn.open_channel(2, other)
    ch2.basic_consume("q", "c2")
    five.close()
    assert [d[3] for d in other.deliveries] == [b"0", b"1", b"2", b"3", b"4"]


def test_channel_close_cancels_consumers(conn: Connection, five: Channel, sink: RecordingSink) -> None:
    """A closed channel's consumers get nothing more."""
    five.close()
    publish(conn.open_channel(2, RecordingSink()), "q")
    assert sink.events == []


def test_channel_close_is_idempotent(conn: Connection, five: Channel) -> None:
    """Closing twice is harmless; the channel number is free again."""
    five.close()
    five.close()
    assert 1 not in conn.channels
    conn.open_channel(1, RecordingSink())


def test_closed_channel_refuses_methods(five: Channel) -> None:
    """Any method on a closed channel is 504 CHANNEL_ERROR."""
    five.close()
    with pytest.raises(HardError) as e:
        five.basic_ack(1)
    assert e.value.reply_code == 504
    with pytest.raises(HardError):
        publish(five, "q")


def test_connection_close_requeues_and_closes_channels(
    broker: Broker, conn: Connection, five: Channel
) -> None:
    """Connection.close closes its channels, requeueing their unacked deliveries."""
    conn.close()
    conn.close()
    assert not five.is_open
    other = broker.connect().open_channel(1, RecordingSink())
    assert other.queue_declare("q", passive=True)[1] == 5


def test_closed_connection_refuses_channels(conn: Connection) -> None:
    """A closed connection opens no channels."""
    conn.close()
    with pytest.raises(HardError):
        conn.open_channel(5, RecordingSink())


def test_duplicate_channel_number_is_hard_504(conn: Connection, ch: Channel) -> None:
    """Opening an already-open channel number is a connection error."""
    with pytest.raises(HardError) as e:
        conn.open_channel(1, RecordingSink())
    assert e.value.reply_code == 504
