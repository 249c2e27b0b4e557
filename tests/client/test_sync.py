"""The blocking client against a real broker over TCP (the broker runs in a subprocess)."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from amqplike.client import BasicProperties as ClientBasicProperties
from amqplike.client.exceptions import (
    AMQPConnectionError,
    ChannelClosedByBroker,
    ChannelWrongStateError,
    ConnectionWrongStateError,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
    ReentrancyError,
    UnroutableError,
)
from amqplike.client.parameters import ConnectionParameters, PlainCredentials, URLParameters
from amqplike.client.sync import BlockingChannel, BlockingConnection, MethodFrame
from amqplike.properties import BasicProperties
from amqplike.wire import methods as m


def test_basic_properties_is_the_shared_value() -> None:
    """amqplike.client.BasicProperties is amqplike.properties.BasicProperties itself."""
    assert ClientBasicProperties is BasicProperties


def test_publish_then_get_keeps_body_and_properties(
    connection: BlockingConnection, qname: str
) -> None:
    """A message published to the default exchange comes back intact from basic_get."""
    ch = connection.channel()
    frame = ch.queue_declare(qname)
    assert isinstance(frame, MethodFrame)
    assert (frame.method.queue, frame.method.message_count, frame.method.consumer_count) == (
        qname, 0, 0
    )
    props = BasicProperties(content_type="application/json", headers={"n": 1}, message_id="m1")
    ch.basic_publish("", qname, b'{"a": 1}', props)
    method, properties, body = ch.basic_get(qname, auto_ack=True)
    assert isinstance(method, m.BasicGetOk)
    assert (method.routing_key, method.exchange, method.redelivered) == (qname, "", False)
    assert properties == props
    assert body == b'{"a": 1}'
    assert ch.basic_get(qname) == (None, None, None)


def test_str_bodies_are_sent_utf8(connection: BlockingConnection, qname: str) -> None:
    """As in pika, a str body is encoded as UTF-8."""
    ch = connection.channel()
    ch.queue_declare(qname)
    ch.basic_publish("", qname, "héllo")
    assert ch.basic_get(qname, auto_ack=True)[2] == "héllo".encode()


def test_pipelined_publishes_are_flushed_by_the_next_blocking_call(
    broker_url: str, qname: str
) -> None:
    """Buffered publishes all reach the broker before a following declare is answered."""
    with BlockingConnection(broker_url, publish_buffer_bytes=1 << 30) as conn:
        ch = conn.channel()
        ch.queue_declare(qname)
        for i in range(1000):
            ch.basic_publish("", qname, b"%d" % i)
        assert ch.queue_declare(qname, passive=True).method.message_count == 1000


def test_server_named_queue_and_counts(connection: BlockingConnection) -> None:
    """queue_declare('') names the queue; purge and delete report message counts."""
    ch = connection.channel()
    name = ch.queue_declare("", exclusive=True).method.queue
    assert name.startswith("amq.gen-")
    for _ in range(3):
        ch.basic_publish("", name, b"x")
    assert ch.queue_purge(name).method.message_count == 3
    ch.basic_publish("", name, b"y")
    assert ch.queue_delete(name).method.message_count == 1


def test_topic_exchange_binding_routes_and_unbind_stops(
    connection: BlockingConnection, qname: str
) -> None:
    """A topic binding routes matching keys; after queue_unbind nothing arrives."""
    ch = connection.channel()
    ch.exchange_declare(f"{qname}-x", exchange_type="topic")
    ch.queue_declare(qname)
    ch.queue_bind(qname, f"{qname}-x", routing_key="logs.*")
    ch.basic_publish(f"{qname}-x", "logs.error", b"match")
    ch.basic_publish(f"{qname}-x", "other.error", b"no match")
    assert ch.basic_get(qname, auto_ack=True)[2] == b"match"
    assert ch.basic_get(qname) == (None, None, None)
    ch.queue_unbind(qname, f"{qname}-x", routing_key="logs.*")
    ch.basic_publish(f"{qname}-x", "logs.error", b"after unbind")
    assert ch.basic_get(qname) == (None, None, None)
    ch.exchange_delete(f"{qname}-x")


def test_exchange_to_exchange_binding(connection: BlockingConnection, qname: str) -> None:
    """exchange_bind forwards messages from the source exchange to the destination."""
    ch = connection.channel()
    ch.exchange_declare(f"{qname}-src", "fanout")
    ch.exchange_declare(f"{qname}-dst", "direct")
    ch.exchange_bind(f"{qname}-dst", f"{qname}-src")
    ch.queue_declare(qname)
    ch.queue_bind(qname, f"{qname}-dst", "k")
    ch.basic_publish(f"{qname}-src", "k", b"forwarded")
    assert ch.basic_get(qname, auto_ack=True)[2] == b"forwarded"
    ch.exchange_unbind(f"{qname}-dst", f"{qname}-src")
    ch.basic_publish(f"{qname}-src", "k", b"dropped")
    assert ch.basic_get(qname) == (None, None, None)


def test_basic_consume_start_and_stop_consuming(
    connection: BlockingConnection, qname: str
) -> None:
    """Callbacks get (channel, method, properties, body); stop_consuming ends start_consuming."""
    ch = connection.channel()
    ch.queue_declare(qname)
    for i in range(5):
        ch.basic_publish("", qname, b"%d" % i, BasicProperties(priority=1))
    seen: list[tuple[Any, ...]] = []

    def on_message(
        channel: BlockingChannel, method: m.BasicDeliver, props: BasicProperties, body: bytes
    ) -> None:
        seen.append((channel, method.consumer_tag, method.routing_key, method.exchange, body))
        channel.basic_ack(method.delivery_tag)
        if len(seen) == 5:
            channel.stop_consuming()

    tag = ch.basic_consume(qname, on_message)
    ch.start_consuming()
    assert [s[4] for s in seen] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(s[0] is ch and s[1] == tag and s[2] == qname and s[3] == "" for s in seen)
    assert ch.consumer_tags == []
    assert ch.queue_declare(qname, passive=True).method.message_count == 0


def test_consume_generator_and_inactivity_timeout(
    connection: BlockingConnection, qname: str
) -> None:
    """consume() yields messages, then (None, None, None) once the queue stays idle."""
    ch = connection.channel()
    ch.queue_declare(qname)
    ch.basic_publish("", qname, b"one")
    ch.basic_publish("", qname, b"two")
    bodies = []
    for method, _props, body in ch.consume(qname, inactivity_timeout=0.2):
        if method is None:
            break
        bodies.append(body)
        ch.basic_ack(method.delivery_tag)
    assert bodies == [b"one", b"two"]
    assert ch.cancel() == 0
    assert ch.consumer_tags == []


def test_nack_requeues_as_redelivered_and_reject_drops(
    connection: BlockingConnection, qname: str
) -> None:
    """basic_nack(requeue=True) puts the message back, redelivered; basic_reject(False) drops it."""
    ch = connection.channel()
    ch.queue_declare(qname)
    ch.basic_publish("", qname, b"m")
    first, _, _ = ch.basic_get(qname)
    assert first is not None and not first.redelivered
    ch.basic_nack(first.delivery_tag, requeue=True)
    second, _, body = ch.basic_get(qname)
    assert second is not None and second.redelivered and body == b"m"
    ch.basic_reject(second.delivery_tag, requeue=False)
    assert ch.basic_get(qname) == (None, None, None)


def test_prefetch_limits_unacked_deliveries(connection: BlockingConnection, qname: str) -> None:
    """With basic_qos(prefetch_count=2) only two deliveries come until one is acked."""
    ch = connection.channel()
    ch.queue_declare(qname)
    for i in range(5):
        ch.basic_publish("", qname, b"%d" % i)
    ch.basic_qos(prefetch_count=2)
    got: list[m.BasicDeliver] = []
    ch.basic_consume(qname, lambda _c, method, _p, _b: got.append(method))
    while len(got) < 2:
        connection.process_data_events(time_limit=None)
    # The broker answers the ping only after it sent what it could deliver.
    ch.queue_declare(qname, passive=True)
    connection.process_data_events(time_limit=0)
    assert len(got) == 2
    ch.basic_ack(got[0].delivery_tag)
    while len(got) < 3:
        connection.process_data_events(time_limit=None)
    ch.queue_declare(qname, passive=True)
    connection.process_data_events(time_limit=0)
    assert len(got) == 3


def test_basic_cancel_requeues_undispatched_deliveries(
    connection: BlockingConnection, qname: str
) -> None:
    """Deliveries read but not yet given to the callback go back to the queue on cancel."""
    ch = connection.channel()
    ch.queue_declare(qname)
    for i in range(3):
        ch.basic_publish("", qname, b"%d" % i)
    got: list[bytes] = []
    tag = ch.basic_consume(qname, lambda _c, _m, _p, body: got.append(body))
    ch.queue_declare(qname, passive=True)  # deliveries arrive meanwhile, undispatched
    assert ch.basic_cancel(tag) == []
    connection.process_data_events(time_limit=0)
    assert got == []
    assert ch.queue_declare(qname, passive=True).method.message_count == 3


def test_confirm_mode_publish_and_unroutable_error(
    connection: BlockingConnection, qname: str
) -> None:
    """In confirm mode a routable publish returns; a returned mandatory one raises UnroutableError."""
    ch = connection.channel()
    ch.confirm_delivery()
    ch.queue_declare(qname)
    ch.basic_publish("", qname, b"kept", mandatory=True)
    ch.basic_publish("", f"{qname}-nowhere", b"dropped")  # not mandatory: confirmed
    with pytest.raises(UnroutableError) as info:
        ch.basic_publish("", f"{qname}-nowhere", b"returned", mandatory=True)
    (returned,) = info.value.messages
    assert returned.body == b"returned"
    assert returned.method.reply_code == 312
    assert returned.method.routing_key == f"{qname}-nowhere"
    assert ch.queue_declare(qname, passive=True).method.message_count == 1


def test_return_callback_outside_confirm_mode(connection: BlockingConnection, qname: str) -> None:
    """Without confirms a returned mandatory message reaches add_on_return_callback."""
    ch = connection.channel()
    returned: list[tuple[Any, ...]] = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((c, method, body)))
    ch.basic_publish("", f"{qname}-nowhere", b"back", mandatory=True)
    while not returned:
        connection.process_data_events(time_limit=None)
    ((channel, method, body),) = returned
    assert channel is ch and body == b"back" and method.reply_text == "NO_ROUTE"


def test_broker_channel_error_raises_channel_closed_by_broker(
    connection: BlockingConnection, qname: str
) -> None:
    """A 404 closes only the channel: the call raises ChannelClosedByBroker, later calls
    ChannelWrongStateError, and the connection keeps working."""
    ch = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(qname, passive=True)
    assert info.value.reply_code == 404
    assert qname in info.value.reply_text
    assert ch.is_closed
    with pytest.raises(ChannelWrongStateError):
        ch.queue_declare(qname)
    assert connection.is_open
    assert connection.channel().queue_declare(qname).method.queue == qname


def test_publish_to_missing_exchange_surfaces_on_the_next_call(
    connection: BlockingConnection, qname: str
) -> None:
    """An asynchronous 404 from a publish fails the next blocking call on that channel."""
    ch = connection.channel()
    ch.basic_publish(f"{qname}-missing", "k", b"x")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(qname)
    assert info.value.reply_code == 404


def test_channel_close_and_connection_close(broker_url: str) -> None:
    """Closing is clean; using a closed channel or connection raises the wrong-state errors."""
    conn = BlockingConnection(broker_url)
    ch = conn.channel()
    ch.close()
    assert ch.is_closed and conn.is_open
    with pytest.raises(ChannelWrongStateError):
        ch.basic_publish("", "q", b"x")
    conn.close()
    assert conn.is_closed and not conn.is_open
    with pytest.raises(ConnectionWrongStateError):
        conn.channel()
    with pytest.raises(ConnectionWrongStateError):
        conn.close()


def test_context_managers_close(broker_url: str) -> None:
    """``with`` closes the channel and the connection."""
    with BlockingConnection(broker_url) as conn, conn.channel() as ch:
        assert ch.is_open
    assert ch.is_closed and conn.is_closed


def test_start_consuming_inside_a_callback_is_refused(
    connection: BlockingConnection, qname: str
) -> None:
    """Recursion into start_consuming from a callback raises ReentrancyError."""
    ch = connection.channel()
    ch.queue_declare(qname)
    errors: list[BaseException] = []

    def on_message(channel: BlockingChannel, method: Any, _p: Any, _b: bytes) -> None:
        try:
            channel.start_consuming()
        except ReentrancyError as e:
            errors.append(e)
        channel.stop_consuming()

    ch.basic_consume(qname, on_message, auto_ack=True)
    ch.basic_publish("", qname, b"x")
    ch.start_consuming()
    assert len(errors) == 1


def test_timers_and_threadsafe_callbacks(connection: BlockingConnection) -> None:
    """call_later runs from process_data_events; add_callback_threadsafe wakes a blocked wait."""
    fired: list[str] = []
    connection.call_later(0, lambda: fired.append("timer"))
    connection.process_data_events(time_limit=0)
    assert fired == ["timer"]
    removed = connection.call_later(0, lambda: fired.append("removed"))
    connection.remove_timeout(removed)
    thread = threading.Thread(
        target=connection.add_callback_threadsafe, args=(lambda: fired.append("thread"),)
    )
    thread.start()
    connection.process_data_events(time_limit=None)  # returns once the callback ran
    thread.join()
    assert fired == ["timer", "thread"]


def test_heartbeats_are_sent_while_blocked(broker_url: str) -> None:
    """With a 1 s heartbeat the server keeps a client that only sleeps in connection.sleep()."""
    params = URLParameters(broker_url + "?heartbeat=1")
    with BlockingConnection(params) as conn:
        assert conn._engine.heartbeat == 1
        conn.sleep(2.5)  # the server drops peers silent for 2 s
        assert conn.channel().is_open


def test_wrong_password_is_probable_authentication_error(broker_url: str) -> None:
    """Refused credentials raise ProbableAuthenticationError with the broker's 403."""
    params = URLParameters(broker_url)
    bad = ConnectionParameters(
        host=params.host, port=params.port, credentials=PlainCredentials("guest", "wrong")
    )
    with pytest.raises(ProbableAuthenticationError) as info:
        BlockingConnection(bad)
    assert info.value.reply_code == 403


def test_unknown_vhost_is_probable_access_denied(broker_url: str) -> None:
    """An unknown vhost raises ProbableAccessDeniedError (530 from connection.open)."""
    with pytest.raises(ProbableAccessDeniedError) as info:
        BlockingConnection(broker_url.rsplit("/", 1)[0] + "/nope")
    assert info.value.reply_code == 530


def test_connection_refused_is_amqp_connection_error() -> None:
    """Nothing listening: AMQPConnectionError after the configured attempts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(AMQPConnectionError):
            BlockingConnection(ConnectionParameters(host="127.0.0.1", port=port))


def test_broker_cancel_notifies_and_ends_consume_generator(
    connection: BlockingConnection, qname: str
) -> None:
    """Deleting a consumed queue: add_on_cancel_callback hears basic.cancel and consume() ends."""
    consumer_channel = connection.channel()
    consumer_channel.queue_declare(qname)
    frames: list[MethodFrame] = []
    consumer_channel.add_on_cancel_callback(frames.append)
    generator = consumer_channel.consume(qname, inactivity_timeout=5)
    connection.channel().queue_delete(qname)
    assert list(generator) == []  # ends without yielding: cancelled by the broker
    connection.process_data_events(time_limit=0)
    (frame,) = frames
    assert isinstance(frame.method, m.BasicCancel)
    assert consumer_channel.consumer_tags == []
