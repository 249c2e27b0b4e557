"""The broker's AMQP semantics, driven through the sync client against the real process."""

from __future__ import annotations

import socket
import uuid

import pytest

from amqplike.client import BasicProperties
from amqplike.client.exceptions import ChannelClosedByBroker, UnroutableError
from amqplike.client.sync import BlockingChannel, BlockingConnection
from amqplike.errors import NOT_FOUND, RESOURCE_LOCKED
from tests.e2e.broker import BrokerProcess


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def channel(broker: BrokerProcess) -> BlockingChannel:
    connection = BlockingConnection(broker.url)
    yield connection.channel()
    if connection.is_open:
        connection.close()


def _drain(channel: BlockingChannel, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


@pytest.mark.parametrize(
    ("exchange_type", "bindings", "publishes", "expected"),
    [
        ("direct", {"a": ["red"], "b": ["blue", "red"]}, ["red", "blue", "green"], {"a": ["red"], "b": ["red", "blue"]}),
        ("topic", {"a": ["*.error"], "b": ["kern.#"], "c": ["#"]}, ["kern.error", "app.error", "kern", "a.b.c"],
         {"a": ["kern.error", "app.error"], "b": ["kern.error", "kern"], "c": ["kern.error", "app.error", "kern", "a.b.c"]}),
        ("fanout", {"a": [""], "b": ["ignored"]}, ["x", "y"], {"a": ["x", "y"], "b": ["x", "y"]}),
    ],
)
def test_routing_by_exchange_type(
    channel: BlockingChannel,
    exchange_type: str,
    bindings: dict[str, list[str]],
    publishes: list[str],
    expected: dict[str, list[str]],
) -> None:
    """Each exchange type routes every message to exactly the matching queues, once."""
    exchange = _name(exchange_type)
    channel.exchange_declare(exchange, exchange_type=exchange_type, auto_delete=True)
    queues = {}
    for label, keys in bindings.items():
        queues[label] = channel.queue_declare("", exclusive=True).method.queue
        for key in keys:
            channel.queue_bind(queues[label], exchange, routing_key=key)
    for key in publishes:
        channel.basic_publish(exchange, key, key.encode())
    for label, keys in expected.items():
        assert _drain(channel, queues[label]) == [k.encode() for k in keys]


def test_headers_exchange_all_and_any(channel: BlockingChannel) -> None:
    """x-match=all needs every header, x-match=any one of them."""
    exchange = _name("headers")
    channel.exchange_declare(exchange, exchange_type="headers", auto_delete=True)
    q_all = channel.queue_declare("", exclusive=True).method.queue
    q_any = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q_all, exchange, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    channel.queue_bind(q_any, exchange, arguments={"x-match": "any", "format": "pdf", "type": "report"})
    for body, headers in [(b"both", {"format": "pdf", "type": "report"}), (b"one", {"format": "pdf"}), (b"none", {})]:
        channel.basic_publish(exchange, "", body, properties=BasicProperties(headers=headers))
    assert _drain(channel, q_all) == [b"both"]
    assert _drain(channel, q_any) == [b"both", b"one"]


def test_prefetch_window_never_exceeded(broker: BrokerProcess, channel: BlockingChannel) -> None:
    """With prefetch 3 a consumer holds at most 3 unacked deliveries, and gets more as it acks."""
    queue = channel.queue_declare("", exclusive=True).method.queue
    for i in range(10):
        channel.basic_publish("", queue, str(i).encode())
    channel.basic_qos(prefetch_count=3)
    held: list[int] = []
    channel.basic_consume(queue, lambda ch, method, props, body: held.append(method.delivery_tag))
    channel.connection.process_data_events(time_limit=0.5)
    assert len(held) == 3
    channel.basic_ack(held[0])
    channel.connection.process_data_events(time_limit=0.5)
    assert len(held) == 4
    channel.basic_ack(held[-1], multiple=True)
    channel.connection.process_data_events(time_limit=0.5)
    assert len(held) == 7


def test_unacked_requeued_with_redelivered_when_consumer_dies(broker: BrokerProcess, channel: BlockingChannel) -> None:
    """A consumer whose socket drops loses its unacked deliveries back to the queue, redelivered (D7)."""
    queue = _name("jobs")
    channel.queue_declare(queue, auto_delete=False)
    for i in range(5):
        channel.basic_publish("", queue, f"job{i}".encode())
    victim = BlockingConnection(broker.url)
    victim_channel = victim.channel()
    got: list[bytes] = []
    victim_channel.basic_consume(queue, lambda ch, method, props, body: got.append(body))
    victim.process_data_events(time_limit=0.5)
    assert len(got) == 5
    # kill the socket without a close handshake, as a crashed consumer would
    victim._sock.shutdown(socket.SHUT_RDWR)
    victim._sock.close()
    redelivered = []
    for method, _props, body in channel.consume(queue, inactivity_timeout=2):
        if method is None:
            break
        redelivered.append((body, method.redelivered))
        channel.basic_ack(method.delivery_tag)
        if len(redelivered) == 5:
            break
    channel.cancel()
    assert redelivered == [(f"job{i}".encode(), True) for i in range(5)]
    channel.queue_delete(queue)


def test_confirms_and_mandatory_returns(channel: BlockingChannel) -> None:
    """In confirm mode a routable publish returns; an unroutable mandatory one raises UnroutableError."""
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"kept", mandatory=True)
    with pytest.raises(UnroutableError):
        channel.basic_publish("", _name("nowhere"), b"lost", mandatory=True)
    assert _drain(channel, queue) == [b"kept"]


def test_exclusive_queue_belongs_to_its_connection(broker: BrokerProcess, channel: BlockingChannel) -> None:
    """Another connection gets 405 on an exclusive queue, and the queue dies with its owner."""
    owner = BlockingConnection(broker.url)
    queue = owner.channel().queue_declare("", exclusive=True).method.queue
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_declare(queue, passive=True)
    assert info.value.reply_code == RESOURCE_LOCKED
    owner.close()
    other = BlockingConnection(broker.url).channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        other.queue_declare(queue, passive=True)
    assert info.value.reply_code == NOT_FOUND


def test_auto_delete_queue_dies_with_last_consumer(broker: BrokerProcess, channel: BlockingChannel) -> None:
    """An auto-delete queue is deleted when its last consumer is cancelled."""
    queue = _name("auto")
    channel.queue_declare(queue, auto_delete=True)
    tag = channel.basic_consume(queue, lambda *args: None)
    channel.basic_cancel(tag)
    with pytest.raises(ChannelClosedByBroker) as info:
        channel.queue_declare(queue, passive=True)
    assert info.value.reply_code == NOT_FOUND
