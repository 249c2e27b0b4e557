"""Commands that reach the core, and what the core sends back through the channel sink."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from amqplike.properties import BasicProperties
from amqplike.server import BrokerFactory
from amqplike.wire import FRAME_BODY, Command, FrameDecoder
from amqplike.wire.methods import (
    BasicAck,
    BasicCancel,
    BasicCancelOk,
    BasicConsume,
    BasicConsumeOk,
    BasicDeliver,
    BasicGet,
    BasicGetEmpty,
    BasicGetOk,
    BasicNack,
    BasicQos,
    BasicQosOk,
    BasicRecover,
    BasicRecoverOk,
    BasicReject,
    BasicReturn,
    ChannelClose,
    ChannelCloseOk,
    ChannelFlow,
    ChannelFlowOk,
    ConfirmSelect,
    ConfirmSelectOk,
    ExchangeBind,
    ExchangeBindOk,
    ExchangeDeclare,
    ExchangeDeclareOk,
    ExchangeDelete,
    ExchangeDeleteOk,
    ExchangeUnbind,
    ExchangeUnbindOk,
    QueueBind,
    QueueBindOk,
    QueueDeclare,
    QueueDeclareOk,
    QueueDelete,
    QueueDeleteOk,
    QueuePurge,
    QueuePurgeOk,
    QueueUnbind,
    QueueUnbindOk,
)
from tests.server._client import TestClient, make_factory


def _declare(client: TestClient, queue: str, channel: int = 1) -> None:
    client.send(channel, QueueDeclare(queue))
    client.expect(QueueDeclareOk, channel)


def _deliveries(commands: list[Any]) -> list[tuple[int, bool, bytes]]:
    return [
        (c.method.delivery_tag, c.method.redelivered, c.body)
        for c in commands
        if isinstance(c, Command) and isinstance(c.method, BasicDeliver)
    ]


def test_publish_to_consumer_on_other_connection(factory: BrokerFactory) -> None:
    """A publish on connection A is delivered to a consumer on connection B, with properties."""
    consumer = TestClient(factory)
    consumer.handshake()
    consumer.open_channel(1)
    _declare(consumer, "jobs")
    consumer.send(1, BasicConsume("jobs", "c1"))
    assert consumer.expect(BasicConsumeOk).consumer_tag == "c1"
    publisher = TestClient(factory)
    publisher.handshake()
    publisher.open_channel(1)
    props = BasicProperties(content_type="text/plain", headers={"k": 1})
    publisher.publish(1, b"hello", routing_key="jobs", properties=props)
    [command] = consumer.received()
    assert command.method == BasicDeliver("c1", 1, False, "", "jobs")
    assert command.properties == props
    assert command.body == b"hello"


def test_large_body_split_to_frame_max(factory: BrokerFactory) -> None:
    """Bodies above the negotiated frame_max travel in several frames both ways."""
    client = TestClient(factory)
    client.handshake(frame_max=4096)
    client.open_channel(1)
    _declare(client, "big")
    body = bytes(range(256)) * 100
    client.publish(1, body, routing_key="big")
    client.send(1, BasicGet("big", no_ack=True))
    [command] = client.received()
    assert isinstance(command.method, BasicGetOk)
    assert command.body == body
    # Every frame the server wrote fits the negotiated 4096 bytes.
    frames = FrameDecoder(4096).feed(client.transport.value())
    assert sum(1 for ft, _, _ in frames if ft == FRAME_BODY) == 7


def test_consume_ok_precedes_ready_deliveries(opened: TestClient) -> None:
    """consume-ok comes before the deliveries of messages already in the queue."""
    _declare(opened, "q")
    opened.publish(1, b"a", routing_key="q")
    opened.publish(1, b"b", routing_key="q")
    opened.send(1, BasicConsume("q", "tag"))
    methods = opened.methods()
    assert isinstance(methods[0], BasicConsumeOk)
    assert [type(m) for m in methods[1:]] == [BasicDeliver, BasicDeliver]


def test_qos_ok_precedes_released_deliveries(opened: TestClient) -> None:
    """qos-ok comes before deliveries a larger prefetch window lets through."""
    opened.send(1, BasicQos(0, 1, True))
    opened.expect(BasicQosOk)
    _declare(opened, "q")
    for body in (b"1", b"2", b"3"):
        opened.publish(1, body, routing_key="q")
    opened.send(1, BasicConsume("q", "c"))
    assert len(_deliveries(opened.received())) == 1
    opened.send(1, BasicQos(0, 5, True))
    methods = opened.methods()
    assert isinstance(methods[0], BasicQosOk)
    assert [type(m) for m in methods[1:]] == [BasicDeliver, BasicDeliver]


def test_ack_reject_nack(opened: TestClient) -> None:
    """Acks settle, reject/nack with requeue redeliver with redelivered=True."""
    _declare(opened, "q")
    opened.publish(1, b"m", routing_key="q")
    opened.send(1, BasicConsume("q", "c"))
    assert _deliveries(opened.received()) == [(1, False, b"m")]
    opened.send(1, BasicReject(1, True))
    assert _deliveries(opened.received()) == [(2, True, b"m")]
    opened.send(1, BasicNack(2, False, True))
    assert _deliveries(opened.received()) == [(3, True, b"m")]
    opened.send(1, BasicAck(3, False))
    assert opened.received() == []
    opened.send(1, QueueDeclare("q", passive=True))
    assert opened.expect(QueueDeclareOk).message_count == 0


def test_unacked_requeued_on_connection_lost(factory: BrokerFactory) -> None:
    """A consumer's socket dies with unacked deliveries: another consumer gets them redelivered (D7)."""
    first = TestClient(factory)
    first.handshake()
    first.open_channel(1)
    _declare(first, "q")
    first.send(1, BasicQos(0, 2, False))
    first.expect(BasicQosOk)
    first.send(1, BasicConsume("q", "first"))
    first.methods()
    for body in (b"a", b"b"):
        first.publish(1, body, routing_key="q")
    assert [d[2] for d in _deliveries(first.received())] == [b"a", b"b"]
    second = TestClient(factory)
    second.handshake()
    second.open_channel(1)
    second.send(1, BasicConsume("q", "second"))
    assert second.methods() == [BasicConsumeOk("second")]
    first.disconnect()
    first.disconnect()  # idempotent
    assert _deliveries(second.received()) == [(1, True, b"a"), (2, True, b"b")]


def test_exclusive_queue_deleted_with_connection(factory: BrokerFactory) -> None:
    """An exclusive queue dies with its connection."""
    owner = TestClient(factory)
    owner.handshake()
    owner.open_channel(1)
    owner.send(1, QueueDeclare("mine", exclusive=True))
    owner.expect(QueueDeclareOk)
    owner.disconnect()
    other = TestClient(factory)
    other.handshake()
    other.open_channel(1)
    other.send(1, QueueDeclare("mine", passive=True))
    assert isinstance(other.expect(ChannelClose), ChannelClose)


def test_confirms_coalesced_into_one_multiple_ack(opened: TestClient) -> None:
    """Publishes confirmed in one batch become one basic.ack with multiple=True."""
    opened.send(1, ConfirmSelect())
    opened.expect(ConfirmSelectOk)
    _declare(opened, "q")
    opened.send_raw(b"".join(opened.encode_publish(1, b"m", routing_key="q") for _ in range(5)))
    assert opened.methods() == [BasicAck(5, True)]
    opened.publish(1, b"m", routing_key="q")
    assert opened.methods() == [BasicAck(6, False)]


def test_mandatory_return_precedes_its_confirm(opened: TestClient) -> None:
    """An unroutable mandatory publish: basic.return first, then its ack (D10)."""
    opened.send(1, ConfirmSelect())
    opened.expect(ConfirmSelectOk)
    _declare(opened, "q")
    opened.send_raw(
        opened.encode_publish(1, b"ok", routing_key="q")
        + opened.encode_publish(1, b"lost", routing_key="nowhere", mandatory=True)
        + opened.encode_publish(1, b"ok", routing_key="q")
    )
    commands = opened.received()
    assert [type(c.method) for c in commands] == [BasicReturn, BasicAck]
    assert commands[0].method == BasicReturn(312, "NO_ROUTE", "", "nowhere")
    assert commands[0].body == b"lost"
    assert commands[1].method == BasicAck(3, True)


def test_confirm_without_coalescing_on_gap(opened: TestClient) -> None:
    """Confirms of a channel never claim a tag still unconfirmed (multiple only below the gap)."""
    from amqplike.server._channel import ServerChannel

    channel: ServerChannel = opened.protocol._channels[1]
    channel.select_confirms()
    for _ in range(4):
        channel.count_publish()
    channel.confirmed(2, False, True)
    channel.confirmed(3, False, True)
    channel.confirmed(4, False, False)
    frames = channel.confirm_frames()
    from amqplike.wire import CommandAssembler, FrameDecoder

    decoder, assembler = FrameDecoder(), CommandAssembler()
    methods = []
    for frame in frames:
        for ft, ch, payload in decoder.feed(frame):
            command = assembler.feed(ft, ch, payload)
            assert command is not None
            methods.append(command.method)
    # Tag 1 is still unconfirmed: 2 and 3 go one by one; 4 is nacked.
    assert methods == [BasicAck(2, False), BasicAck(3, False), BasicNack(4, False, False)]
    channel.confirmed(1, False, True)
    assert len(channel.confirm_frames()) == 1


def test_confirms_written_before_channel_close(opened: TestClient) -> None:
    """Confirms earned before a channel error are sent before its channel.close."""
    opened.send(1, ConfirmSelect())
    opened.expect(ConfirmSelectOk)
    _declare(opened, "q")
    opened.send_raw(
        opened.encode_publish(1, b"ok", routing_key="q")
        + opened.encode_publish(1, b"x", exchange="missing")
    )
    methods = opened.methods()
    assert [type(m) for m in methods] == [BasicAck, ChannelClose]
    assert methods[0] == BasicAck(1, False)


def test_get_ok_and_get_empty(opened: TestClient) -> None:
    """basic.get answers get-ok with the message and the count left, then get-empty."""
    _declare(opened, "q")
    opened.publish(1, b"one", routing_key="q")
    opened.publish(1, b"two", routing_key="q")
    opened.send(1, BasicGet("q", no_ack=True))
    [command] = opened.received()
    assert command.method == BasicGetOk(1, False, "", "q", 1)
    assert command.body == b"one"
    opened.send(1, BasicGet("q", no_ack=True))
    opened.received()
    opened.send(1, BasicGet("q"))
    assert isinstance(opened.expect(BasicGetEmpty), BasicGetEmpty)


def test_exchange_and_queue_rpcs(opened: TestClient) -> None:
    """Every exchange/queue method gets its -ok carrying the core's values."""
    steps: list[tuple[Any, Any]] = [
        (ExchangeDeclare("x", "topic"), ExchangeDeclareOk()),
        (ExchangeDeclare("y", "fanout"), ExchangeDeclareOk()),
        (ExchangeBind("y", "x", "a.#"), ExchangeBindOk()),
        (QueueDeclare("q"), QueueDeclareOk("q", 0, 0)),
        (QueueBind("q", "y"), QueueBindOk()),
    ]
    for request, reply in steps:
        opened.send(1, request)
        assert opened.methods() == [reply]
    opened.publish(1, b"m", exchange="x", routing_key="a.b")
    opened.send(1, QueuePurge("q"))
    assert opened.methods() == [QueuePurgeOk(1)]
    opened.publish(1, b"m", exchange="x", routing_key="a.b")
    for request, reply in [
        (QueueUnbind("q", "y"), QueueUnbindOk()),
        (ExchangeUnbind("y", "x", "a.#"), ExchangeUnbindOk()),
        (ExchangeDelete("y"), ExchangeDeleteOk()),
        (QueueDelete("q"), QueueDeleteOk(1)),
    ]:
        opened.send(1, request)
        assert opened.methods() == [reply]


def test_server_named_queue(opened: TestClient) -> None:
    """queue.declare with an empty name returns the server's name."""
    opened.send(1, QueueDeclare(""))
    assert opened.expect(QueueDeclareOk).queue.startswith("amq.gen-")


def test_nowait_sends_no_reply(opened: TestClient) -> None:
    """With nowait the server answers nothing, and the effect still happens."""
    opened.send(1, ExchangeDeclare("x", "direct", nowait=True))
    opened.send(1, QueueDeclare("q", nowait=True))
    opened.send(1, QueueBind("q", "x", "k", nowait=True))
    opened.send(1, BasicConsume("q", "c", nowait=True))
    opened.send(1, ConfirmSelect(nowait=True))
    assert opened.received() == []
    opened.publish(1, b"m", exchange="x", routing_key="k")
    assert [type(m) for m in opened.methods()] == [BasicDeliver, BasicAck]
    opened.send(1, BasicCancel("c", nowait=True))
    assert opened.received() == []


def test_cancel_and_server_sent_cancel(opened: TestClient) -> None:
    """basic.cancel gets cancel-ok; deleting a consumed queue sends basic.cancel to its consumer."""
    _declare(opened, "q")
    opened.send(1, BasicConsume("q", "c1"))
    opened.expect(BasicConsumeOk)
    opened.send(1, BasicCancel("c1"))
    assert opened.methods() == [BasicCancelOk("c1")]
    opened.send(1, BasicConsume("q", "c2"))
    opened.expect(BasicConsumeOk)
    opened.open_channel(2)
    opened.send(2, QueueDelete("q"))
    methods = opened.methods()
    assert BasicCancel("c2", True) in methods
    assert QueueDeleteOk(0) in methods
    opened.send(1, BasicCancelOk("c2"))
    assert opened.received() == []


def test_channel_flow(opened: TestClient) -> None:
    """channel.flow(false) holds deliveries; flow(true) answers flow-ok, then delivers."""
    _declare(opened, "q")
    opened.send(1, BasicConsume("q", "c", no_ack=True))
    opened.expect(BasicConsumeOk)
    opened.send(1, ChannelFlow(False))
    assert opened.methods() == [ChannelFlowOk(False)]
    opened.publish(1, b"held", routing_key="q")
    assert opened.received() == []
    opened.send(1, ChannelFlow(True))
    methods = opened.methods()
    assert methods[0] == ChannelFlowOk(True)
    assert isinstance(methods[1], BasicDeliver)


def test_recover_redelivers(opened: TestClient) -> None:
    """basic.recover(requeue) answers recover-ok and redelivers the unacked message."""
    _declare(opened, "q")
    opened.publish(1, b"m", routing_key="q")
    opened.send(1, BasicConsume("q", "c"))
    opened.methods()
    opened.send(1, BasicRecover(True))
    methods = opened.methods()
    assert methods[0] == BasicRecoverOk()
    assert [m.redelivered for m in methods[1:] if isinstance(m, BasicDeliver)] == [True]


def test_channel_close_requeues_unacked(opened: TestClient) -> None:
    """Closing a channel requeues its unacked deliveries for the next consumer."""
    _declare(opened, "q")
    opened.publish(1, b"m", routing_key="q")
    opened.send(1, BasicConsume("q", "c"))
    opened.methods()
    opened.send(1, ChannelClose(200, "", 0, 0))
    opened.expect(ChannelCloseOk)
    opened.open_channel(2)
    opened.send(2, BasicGet("q"))
    [command] = opened.received()
    assert command.method.redelivered is True


def test_one_write_per_batch(opened: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many deliveries caused by one read are written with a single writeSequence."""
    _declare(opened, "q")
    opened.send(1, BasicConsume("q", "c", no_ack=True))
    opened.methods()
    writes: list[int] = []
    original = opened.transport.writeSequence

    def counting(data: list[bytes]) -> None:
        writes.append(len(data))
        original(data)

    monkeypatch.setattr(opened.transport, "writeSequence", counting)
    opened.send_raw(b"".join(opened.encode_publish(1, b"m", routing_key="q") for _ in range(20)))
    assert len(writes) == 1
    assert len(_deliveries(opened.received())) == 20


def test_transport_backpressure_pauses_deliveries(opened: TestClient) -> None:
    """While the transport asks its producer to pause, deliveries wait; resume releases them."""
    assert opened.transport.producer is opened.protocol
    assert opened.transport.streaming is True
    _declare(opened, "q")
    opened.send(1, BasicConsume("q", "c", no_ack=True))
    opened.methods()
    opened.protocol.pauseProducing()
    opened.publish(1, b"held", routing_key="q")
    assert opened.received() == []
    opened.protocol.resumeProducing()
    assert _deliveries(opened.received()) == [(1, False, b"held")]


def test_outbound_buffer_cap(clock: Clock) -> None:
    """One batch never buffers much past max_buffered_bytes; the rest follows in later batches."""
    factory = make_factory(clock=clock, max_buffered_bytes=5000)
    client = TestClient(factory)
    client.handshake()
    client.open_channel(1)
    _declare(client, "q")
    for _ in range(50):
        client.publish(1, b"x" * 1000, routing_key="q")
    sizes: list[int] = []
    original = client.transport.writeSequence

    def recording(data: list[bytes]) -> None:
        sizes.append(sum(map(len, data)))
        original(data)

    client.transport.writeSequence = recording  # type: ignore[method-assign]
    client.send(1, BasicConsume("q", "c", no_ack=True))
    assert len(_deliveries(client.received())) == 50
    assert len(sizes) > 1
    assert max(sizes) < 5000 + 2000


def test_output_made_outside_a_read_is_flushed_on_next_turn(
    opened: TestClient, broker: Any, clock: Clock
) -> None:
    """Deliveries caused by a core call outside any read (a service) go out on a callLater(0)."""
    from amqplike.core import Broker

    assert isinstance(broker, Broker)
    _declare(opened, "q")
    opened.send(1, BasicConsume("q", "c", no_ack=True))
    opened.methods()

    class NullSink:
        def deliver(self, *args: object) -> None: ...
        def returned(self, *args: object) -> None: ...
        def confirmed(self, *args: object) -> None: ...
        def consumer_cancelled(self, *args: object) -> None: ...

    service_channel = broker.connect().open_channel(1, NullSink())
    service_channel.basic_publish("", "q", BasicProperties(), b"from a service")
    assert opened.received() == []
    clock.advance(0)
    assert _deliveries(opened.received()) == [(1, False, b"from a service")]
    assert clock.getDelayedCalls() != []  # only the heartbeat timer remains
    assert all(c.getTime() > 0 for c in clock.getDelayedCalls())
