"""RabbitMQ's direct reply-to: the ``amq.rabbitmq.reply-to`` pseudo-queue.

A requester consumes from the pseudo-queue (no-ack) and publishes requests
with ``reply_to="amq.rabbitmq.reply-to"``; the broker rewrites that to a name
reaching this channel, and a responder's reply published to the default
exchange under that name is delivered straight to the requester's channel.
"""

from __future__ import annotations

import pytest

from amqplike.core import DIRECT_REPLY_TO, Broker, Channel, Connection, Message
from amqplike.errors import ChannelError, HardError
from amqplike.properties import BasicProperties

from .conftest import RecordingSink, publish

REQUEST = BasicProperties(reply_to=DIRECT_REPLY_TO, correlation_id="c1")


def open_channel(broker: Broker, number: int = 1) -> tuple[Channel, RecordingSink]:
    """A channel on a fresh connection of ``broker``, with its recording sink."""
    sink = RecordingSink()
    return broker.connect().open_channel(number, sink), sink


def request(requester: Channel, responder: Channel) -> Message:
    """Send a request through queue ``rpc`` and return it as the responder receives it."""
    responder.queue_declare("rpc")
    publish(requester, "rpc", b"request", properties=REQUEST)
    got = responder.basic_get("rpc", no_ack=True)
    assert got is not None
    return got.message


def reply_name(requester: Channel, responder: Channel) -> str:
    """The ``reply_to`` the responder sees in a request from ``requester``."""
    name = request(requester, responder).properties.reply_to
    assert name is not None
    return name


def reply_name_after_consume(requester: Channel, responder: Channel) -> str:
    """Register ``requester``'s reply consumer and return the reply name it gets."""
    requester.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    return reply_name(requester, responder)


@pytest.fixture
def responder(broker: Broker) -> Channel:
    """A channel on another connection, playing the RPC server."""
    return open_channel(broker)[0]


def test_reply_to_is_rewritten_to_a_private_name(ch: Channel, responder: Channel) -> None:
    """The request's reply_to becomes amq.rabbitmq.reply-to.<token>; other properties stay."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    message = request(ch, responder)
    reply_to = message.properties.reply_to
    assert reply_to is not None and reply_to.startswith(DIRECT_REPLY_TO + ".")
    assert len(reply_to) > len(DIRECT_REPLY_TO) + 16
    assert message.properties.correlation_id == "c1"


def test_each_requester_channel_gets_its_own_name(broker: Broker, responder: Channel) -> None:
    """Two requester channels (even on one connection) get different reply names."""
    conn = broker.connect()
    a, b = conn.open_channel(1, RecordingSink()), conn.open_channel(2, RecordingSink())
    for requester in (a, b):
        requester.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    assert reply_name(a, responder) != reply_name(b, responder)


def test_reply_reaches_requester_on_another_connection(broker: Broker, responder: Channel) -> None:
    """A reply published to the default exchange under the reply name reaches only its requester."""
    (a, sink_a), (b, sink_b) = open_channel(broker), open_channel(broker)
    tag_a = a.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    b.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(a, responder)
    publish(responder, name, b"reply", properties=BasicProperties(correlation_id="c1"))
    assert sink_a.deliveries == [(tag_a, 1, False, b"reply")]
    assert sink_b.events == []
    delivered = sink_a.events[0][4]
    assert (delivered.exchange, delivered.routing_key) == ("", name)
    assert delivered.properties.correlation_id == "c1"


def test_reply_is_settled_on_delivery(ch: Channel, sink: RecordingSink, responder: Channel) -> None:
    """A reply is a no-ack delivery: nothing is left unacked and acking its tag is 406."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    publish(responder, reply_name(ch, responder), b"reply")
    assert ch.unacked_count == 0
    with pytest.raises(ChannelError) as e:
        ch.basic_ack(sink.tags()[0])
    assert e.value.reply_code == 406


def test_reply_takes_the_next_delivery_tag_of_the_channel(
    ch: Channel, sink: RecordingSink, responder: Channel
) -> None:
    """Replies and queue deliveries on a channel share one delivery-tag sequence."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    ch.basic_consume(DIRECT_REPLY_TO, "replies", no_ack=True)
    publish(ch, "q", b"m")
    publish(responder, reply_name(ch, responder), b"reply")
    assert sink.deliveries == [("c", 1, False, b"m"), ("replies", 2, False, b"reply")]


def test_delivered_reply_is_not_returned(ch: Channel, responder: Channel, broker: Broker) -> None:
    """A mandatory reply that reached its requester counts as routed: no basic.return."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(ch, responder)
    replier, replier_sink = open_channel(broker)
    replier.confirm_select()
    publish(replier, name, b"reply", mandatory=True)
    assert replier_sink.events == [("confirmed", 1, False, True)]


def test_reply_delivered_while_requester_flow_paused(
    ch: Channel, sink: RecordingSink, responder: Channel
) -> None:
    """channel.flow(false) does not hold replies back (no queue to wait in, as RabbitMQ)."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(ch, responder)
    ch.flow(False)
    publish(responder, name, b"reply")
    assert sink.bodies == [b"reply"]


def test_reply_consumer_must_be_no_ack(ch: Channel) -> None:
    """Consuming replies with acknowledgements is 406, as in RabbitMQ."""
    with pytest.raises(ChannelError) as e:
        ch.basic_consume(DIRECT_REPLY_TO, no_ack=False)
    assert e.value.reply_code == 406
    assert "reply consumer cannot acknowledge" in e.value.reply_text


def test_second_reply_consumer_on_channel_is_406(ch: Channel) -> None:
    """A channel has at most one reply consumer: a second consume is 406."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    with pytest.raises(ChannelError) as e:
        ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    assert e.value.reply_code == 406
    assert "reply consumer already set" in e.value.reply_text


def test_reply_consumer_tag_is_server_named(ch: Channel) -> None:
    """An empty tag gets an amq.ctag- tag; the reply consumer is not a queue consumer."""
    tag = ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    assert tag.startswith("amq.ctag-")
    assert ch.reply_consumer_tag == tag
    assert tag not in ch.consumers


def test_reply_consumer_tag_cannot_be_reused(ch: Channel) -> None:
    """The reply consumer's tag counts as used: reusing it is 530, as for any consumer."""
    ch.queue_declare("q")
    ch.basic_consume(DIRECT_REPLY_TO, "t", no_ack=True)
    with pytest.raises(HardError) as e:
        ch.basic_consume("q", "t")
    assert e.value.reply_code == 530


def test_request_without_reply_consumer_is_406(ch: Channel) -> None:
    """Publishing with reply_to amq.rabbitmq.reply-to needs a reply consumer on that channel."""
    ch.queue_declare("rpc")
    with pytest.raises(ChannelError) as e:
        publish(ch, "rpc", properties=REQUEST)
    assert e.value.reply_code == 406
    assert "fast reply consumer does not exist" in e.value.reply_text
    assert ch.queue_declare("rpc", passive=True)[1] == 0


def test_request_from_another_channel_is_406(broker: Broker) -> None:
    """The reply consumer serves only its own channel, not others of the connection."""
    conn = broker.connect()
    conn.open_channel(1, RecordingSink()).basic_consume(DIRECT_REPLY_TO, no_ack=True)
    other = conn.open_channel(2, RecordingSink())
    with pytest.raises(ChannelError) as e:
        publish(other, "rpc", properties=REQUEST)
    assert e.value.reply_code == 406


def test_reply_after_requester_channel_closed_is_returned(
    ch: Channel, responder: Channel, broker: Broker
) -> None:
    """A mandatory reply to a requester whose channel closed comes back with 312 NO_ROUTE."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(ch, responder)
    ch.close()
    replier, replier_sink = open_channel(broker)
    publish(replier, name, b"late", mandatory=True)
    assert [(e[0], e[1], e[2], e[3].body) for e in replier_sink.events] == [
        ("returned", 312, "NO_ROUTE", b"late")
    ]


def test_unroutable_reply_is_still_confirmed(
    ch: Channel, responder: Channel, broker: Broker
) -> None:
    """In confirm mode a reply nobody waits for is acked after its return, as RabbitMQ does."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(ch, responder)
    ch.close()
    replier, replier_sink = open_channel(broker)
    replier.confirm_select()
    publish(replier, name, mandatory=True)
    assert [e[0] for e in replier_sink.events] == ["returned", "confirmed"]
    assert replier_sink.events[1] == ("confirmed", 1, False, True)


def test_guessed_reply_name_is_unroutable(ch: Channel, sink: RecordingSink, broker: Broker) -> None:
    """A made-up amq.rabbitmq.reply-to.<token> reaches nobody and is returned if mandatory."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    replier, replier_sink = open_channel(broker)
    publish(replier, DIRECT_REPLY_TO + ".guess", mandatory=True)
    assert sink.events == []
    assert [e[:3] for e in replier_sink.events] == [("returned", 312, "NO_ROUTE")]


def test_reply_name_is_special_only_on_default_exchange(
    ch: Channel, sink: RecordingSink, responder: Channel
) -> None:
    """Published to another exchange, a reply name is an ordinary routing key."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    publish(responder, reply_name(ch, responder), exchange="amq.direct")
    assert sink.events == []


def test_cancel_removes_reply_consumer(
    ch: Channel, sink: RecordingSink, responder: Channel
) -> None:
    """After basic.cancel replies are unroutable and requests are refused."""
    tag = ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(ch, responder)
    ch.basic_cancel(tag)
    assert ch.reply_consumer_tag is None
    publish(responder, name, b"late")
    assert sink.events == []
    with pytest.raises(ChannelError) as e:
        publish(ch, "rpc", properties=REQUEST)
    assert e.value.reply_code == 406


def test_consume_again_after_cancel_gets_a_new_name(ch: Channel, responder: Channel) -> None:
    """A cancelled reply consumer can be replaced; the old name stays dead."""
    old = reply_name_after_consume(ch, responder)
    ch.basic_cancel(ch.reply_consumer_tag or "")
    new = reply_name_after_consume(ch, responder)
    assert new != old
    assert ch.vhost.reply_channel(old) is None
    assert ch.vhost.reply_channel(new) is ch


def test_channel_close_unregisters_reply_consumer(ch: Channel) -> None:
    """Closing the channel removes its reply consumer from the vhost's registry."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    assert list(ch.vhost.reply_channels.values()) == [ch]
    ch.close()
    assert ch.vhost.reply_channels == {}


def test_connection_close_unregisters_reply_consumers(conn: Connection) -> None:
    """Closing the connection removes the reply consumers of all its channels."""
    for number in (1, 2):
        conn.open_channel(number, RecordingSink()).basic_consume(DIRECT_REPLY_TO, no_ack=True)
    conn.close()
    assert conn.vhost.reply_channels == {}


def test_passive_declare_of_pseudo_queue_succeeds(ch: Channel) -> None:
    """A passive declare of amq.rabbitmq.reply-to answers 0 messages, 1 consumer (RabbitMQ)."""
    assert ch.queue_declare(DIRECT_REPLY_TO, passive=True) == (DIRECT_REPLY_TO, 0, 1)


def test_declare_of_pseudo_queue_is_always_passive(ch: Channel) -> None:
    """Even passive=false creates nothing: RabbitMQ answers as for a passive declare."""
    assert ch.queue_declare(DIRECT_REPLY_TO, durable=True) == (DIRECT_REPLY_TO, 0, 1)
    assert DIRECT_REPLY_TO not in ch.vhost.queues


def test_declare_of_reply_name_tells_if_requester_is_there(ch: Channel, responder: Channel) -> None:
    """Declaring a reply name succeeds while its consumer lives and is 404 after."""
    ch.basic_consume(DIRECT_REPLY_TO, no_ack=True)
    name = reply_name(ch, responder)
    assert responder.queue_declare(name, passive=True) == (name, 0, 1)
    ch.close()
    with pytest.raises(ChannelError) as e:
        responder.queue_declare(name, passive=True)
    assert e.value.reply_code == 404


def test_declare_of_unknown_reply_name_is_404(ch: Channel) -> None:
    """Any other amq.rabbitmq.reply-to… name is not found, passive or not."""
    for name in (DIRECT_REPLY_TO + ".nope", DIRECT_REPLY_TO + "x"):
        with pytest.raises(ChannelError) as e:
            ch.queue_declare(name)
        assert e.value.reply_code == 404
