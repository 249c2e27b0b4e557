"""queue.declare/delete/purge, exclusive and auto-delete lifetimes."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel, Connection
from amqplike.errors import ChannelError

from .conftest import RecordingSink, publish


@pytest.fixture
def other(broker: Broker) -> Channel:
    """A channel on a second connection."""
    return broker.connect().open_channel(1, RecordingSink())


def test_declare_returns_name_and_counts(ch: Channel) -> None:
    """queue.declare returns (name, message_count, consumer_count)."""
    assert ch.queue_declare("q") == ("q", 0, 0)
    publish(ch, "q")
    publish(ch, "q")
    ch.basic_consume("q", "c", no_ack=True)
    ch.basic_cancel("c")
    ch.basic_consume("q", "c2")
    assert ch.queue_declare("q") == ("q", 0, 1)


def test_declare_counts_ready_messages_only(ch: Channel) -> None:
    """message_count excludes delivered-but-unacked messages."""
    ch.queue_declare("q")
    for _ in range(3):
        publish(ch, "q")
    assert ch.basic_get("q") is not None
    assert ch.queue_declare("q")[1] == 2


def test_server_named_queue(ch: Channel) -> None:
    """An empty queue name gets a fresh amq.gen- name."""
    name1, _, _ = ch.queue_declare("")
    name2, _, _ = ch.queue_declare("")
    assert name1.startswith("amq.gen-") and len(name1) > len("amq.gen-") + 15
    assert name1 != name2
    ch.queue_declare(name1, passive=True)


def test_amq_prefix_queue_name_refused(ch: Channel) -> None:
    """Declaring a queue named amq.* is 403."""
    with pytest.raises(ChannelError) as e:
        ch.queue_declare("amq.mine")
    assert e.value.reply_text == (
        "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'"
    )


def test_passive_declare_missing_queue_is_404(ch: Channel) -> None:
    """A passive declare of a missing queue is 404."""
    with pytest.raises(ChannelError) as e:
        ch.queue_declare("nope", passive=True)
    assert e.value.reply_text == "NOT_FOUND - no queue 'nope' in vhost '/'"


def test_passive_declare_ignores_flags(ch: Channel) -> None:
    """A passive declare does not compare flags."""
    ch.queue_declare("q", durable=True)
    assert ch.queue_declare("q", passive=True, durable=False) == ("q", 0, 0)


@pytest.mark.parametrize(
    ("flag", "first", "second", "text"),
    [
        ("durable", {"durable": True}, {}, "received 'false' but current is 'true'"),
        ("auto_delete", {}, {"auto_delete": True}, "received 'true' but current is 'false'"),
        (
            "x-message-ttl",
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2000}},
            "received the value '2000' but current is the value '1000'",
        ),
        (
            "x-max-length",
            {},
            {"arguments": {"x-max-length": 5}},
            "received the value '5' but current is none",
        ),
    ],
)
def test_redeclare_inequivalent_is_406(
    ch: Channel, flag: str, first: dict[str, object], second: dict[str, object], text: str
) -> None:
    """Redeclaring with a different durable/auto_delete/argument is 406 naming it."""
    ch.queue_declare("q", **first)  # type: ignore[arg-type]
    with pytest.raises(ChannelError) as e:
        ch.queue_declare("q", **second)  # type: ignore[arg-type]
    assert e.value.reply_code == 406
    assert e.value.reply_text.startswith(
        f"PRECONDITION_FAILED - inequivalent arg '{flag}' for queue 'q' in vhost '/': "
    )
    assert e.value.reply_text.endswith(text)


def test_arguments_are_stored(broker: Broker, ch: Channel) -> None:
    """Queue arguments are kept on the queue for later features."""
    ch.queue_declare("q", arguments={"x-message-ttl": 5})
    assert broker.vhosts["/"].queues["q"].arguments == {"x-message-ttl": 5}


def test_exclusive_queue_locked_for_other_connection(ch: Channel, other: Channel) -> None:
    """Another connection gets 405 on declare, passive declare, consume, get, bind, purge, delete."""
    ch.queue_declare("ex", exclusive=True)
    calls = [
        lambda: other.queue_declare("ex", exclusive=True),
        lambda: other.queue_declare("ex", passive=True),
        lambda: other.basic_consume("ex"),
        lambda: other.basic_get("ex"),
        lambda: other.queue_bind("ex", "amq.fanout"),
        lambda: other.queue_purge("ex"),
        lambda: other.queue_delete("ex"),
    ]
    for call in calls:
        with pytest.raises(ChannelError) as e:
            call()
        assert e.value.reply_code == 405
        assert e.value.reply_text.startswith(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'ex' in vhost '/'"
        )


def test_exclusive_flag_mismatch_on_redeclare_is_405(ch: Channel) -> None:
    """Redeclaring a shared queue as exclusive (or the reverse) is 405, as RabbitMQ."""
    ch.queue_declare("shared")
    with pytest.raises(ChannelError) as e:
        ch.queue_declare("shared", exclusive=True)
    assert e.value.reply_code == 405


def test_exclusive_queue_usable_by_owner_on_other_channel(conn: Connection) -> None:
    """The owning connection may use its exclusive queue from any of its channels."""
    a = conn.open_channel(1, RecordingSink())
    b = conn.open_channel(2, RecordingSink())
    a.queue_declare("ex", exclusive=True)
    assert b.queue_declare("ex", exclusive=True) == ("ex", 0, 0)
    publish(b, "ex")
    assert b.basic_get("ex") is not None


def test_exclusive_queue_deleted_when_connection_closes(
    broker: Broker, conn: Connection, ch: Channel, other: Channel
) -> None:
    """Connection.close deletes the connection's exclusive queues."""
    ch.queue_declare("ex", exclusive=True)
    conn.close()
    assert "ex" not in broker.vhosts["/"].queues
    other.queue_declare("ex", exclusive=True)


def test_exclusive_queue_survives_channel_close(conn: Connection, ch: Channel) -> None:
    """Closing the declaring channel does not delete an exclusive queue (it is per connection)."""
    ch.queue_declare("ex", exclusive=True)
    ch.close()
    conn.open_channel(2, RecordingSink()).queue_declare("ex", passive=True)


def test_exclusive_queue_deleted_explicitly_is_forgotten_by_owner(
    conn: Connection, ch: Channel
) -> None:
    """A deleted exclusive queue is no longer tracked by its connection."""
    ch.queue_declare("ex", exclusive=True)
    ch.queue_delete("ex")
    assert conn.exclusive_queues == {}


def test_auto_delete_queue_deleted_after_last_consumer_cancelled(ch: Channel) -> None:
    """An auto-delete queue is deleted when its last consumer is cancelled."""
    ch.queue_declare("ad", auto_delete=True)
    ch.basic_consume("ad", "c1")
    ch.basic_consume("ad", "c2")
    ch.basic_cancel("c1")
    ch.queue_declare("ad", passive=True)
    ch.basic_cancel("c2")
    with pytest.raises(ChannelError):
        ch.queue_declare("ad", passive=True)


def test_auto_delete_queue_without_consumers_stays(ch: Channel) -> None:
    """An auto-delete queue that never had a consumer is kept."""
    ch.queue_declare("ad", auto_delete=True)
    publish(ch, "ad")
    assert ch.queue_declare("ad", passive=True)[1] == 1


def test_auto_delete_queue_deleted_when_consumer_channel_closes(
    conn: Connection, ch: Channel
) -> None:
    """Closing the channel of the last consumer deletes an auto-delete queue."""
    ch.queue_declare("ad", auto_delete=True)
    ch.basic_consume("ad")
    ch.close()
    with pytest.raises(ChannelError):
        conn.open_channel(2, RecordingSink()).queue_declare("ad", passive=True)


def test_purge_returns_ready_count_and_keeps_unacked(ch: Channel, sink: RecordingSink) -> None:
    """queue.purge removes only ready messages and returns how many; unacked ones survive."""
    ch.queue_declare("q")
    for i in range(5):
        publish(ch, "q", bytes([i]))
    got = ch.basic_get("q")
    assert got is not None
    assert ch.queue_purge("q") == 4
    assert ch.queue_declare("q")[1] == 0
    ch.basic_reject(got.delivery_tag, requeue=True)
    assert ch.queue_declare("q")[1] == 1


def test_purge_missing_queue_is_404(ch: Channel) -> None:
    """queue.purge of a missing queue is 404."""
    with pytest.raises(ChannelError) as e:
        ch.queue_purge("nope")
    assert e.value.reply_code == 404


def test_delete_returns_message_count(ch: Channel) -> None:
    """queue.delete returns the number of ready messages deleted."""
    ch.queue_declare("q")
    for _ in range(3):
        publish(ch, "q")
    assert ch.queue_delete("q") == 3
    with pytest.raises(ChannelError):
        ch.queue_declare("q", passive=True)


def test_delete_missing_queue_returns_zero(ch: Channel) -> None:
    """Deleting a missing queue succeeds with 0 (RabbitMQ 3.x)."""
    assert ch.queue_delete("nope") == 0


def test_delete_if_unused_with_consumer_is_406(ch: Channel) -> None:
    """queue.delete(if_unused) with consumers is 406 and keeps the queue."""
    ch.queue_declare("q")
    ch.basic_consume("q")
    with pytest.raises(ChannelError) as e:
        ch.queue_delete("q", if_unused=True)
    assert e.value.reply_text == "PRECONDITION_FAILED - queue 'q' in vhost '/' in use"


def test_delete_if_empty_with_messages_is_406(ch: Channel) -> None:
    """queue.delete(if_empty) with messages is 406."""
    ch.queue_declare("q")
    publish(ch, "q")
    with pytest.raises(ChannelError) as e:
        ch.queue_delete("q", if_empty=True)
    assert e.value.reply_text == "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty"


def test_delete_cancels_consumers_with_notification(
    ch: Channel, sink: RecordingSink, other: Channel
) -> None:
    """Deleting a queue cancels its consumers through sink.consumer_cancelled."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c1")
    other.queue_delete("q")
    assert sink.events == [("cancelled", "c1")]
    assert "c1" not in ch.consumers
    # The tag is free again, and cancelling the old one is a no-op.
    ch.basic_cancel("c1")


def test_ack_after_queue_deleted_is_no_op(ch: Channel, sink: RecordingSink) -> None:
    """Acking or requeueing a delivery whose queue was deleted is not an error."""
    ch.queue_declare("q")
    publish(ch, "q")
    publish(ch, "q")
    ch.basic_consume("q", "c")
    ch.queue_delete("q")
    ch.basic_ack(1)
    ch.basic_nack(2, requeue=True)
    assert ch.unacked_count == 0


def test_deleted_queue_drops_its_bindings(ch: Channel) -> None:
    """A queue redeclared after delete has no old bindings."""
    ch.queue_declare("q")
    ch.queue_bind("q", "amq.direct", "k")
    ch.queue_delete("q")
    ch.queue_declare("q")
    publish(ch, "k", exchange="amq.direct", mandatory=True)
    assert ch.queue_declare("q")[1] == 0
