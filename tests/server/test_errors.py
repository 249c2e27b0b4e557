"""The error boundary: channel errors, connection errors, bugs, and bad bytes."""

from __future__ import annotations

import struct

import cbor2
import pytest
from twisted.internet.task import Clock

from amqplike.core import Broker
from amqplike.errors import (
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
)
from amqplike.properties import EMPTY_PROPERTIES
from amqplike.server import BrokerFactory
from amqplike.wire import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    encode_frame,
    encode_header,
)
from amqplike.wire.methods import (
    BasicConsume,
    BasicDeliver,
    BasicPublish,
    ChannelClose,
    ChannelCloseOk,
    ChannelOpen,
    ChannelOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    QueueDeclare,
    QueueDeclareOk,
)
from tests.server._client import TestClient, make_factory


def _method_payload(*items: object) -> bytes:
    return bytes(cbor2.dumps(list(items)))


def test_frame_over_frame_max_rejected_before_buffering(opened: TestClient) -> None:
    """A declared size above frame_max is 501 as soon as the 7 header bytes are in (P2)."""
    header = struct.pack(">BHI", FRAME_METHOD, 1, 0xFFFFFFF0)
    opened.send_raw(header + b"\0" * 1000)
    close = opened.expect(ConnectionClose, 0)
    assert close.reply_code == FRAME_ERROR
    assert opened.closed
    assert opened.protocol._decoder.buffered_bytes == 0


def test_oversize_frame_during_handshake_limited_to_4096(client: TestClient) -> None:
    """Before tune-ok the limit is 4096 bytes, whatever the server will offer later."""
    from amqplike.wire import PROTOCOL_HEADER

    client.send_raw(PROTOCOL_HEADER + struct.pack(">BHI", FRAME_METHOD, 0, 4089))
    methods = client.methods()
    assert isinstance(methods[-1], ConnectionClose)
    assert methods[-1].reply_code == FRAME_ERROR


def test_invalid_cbor(opened: TestClient) -> None:
    """A method frame whose payload is not valid CBOR is 501."""
    opened.send_raw(encode_frame(FRAME_METHOD, 1, b"\xff\xff\x00"))
    assert opened.expect(ConnectionClose).reply_code == FRAME_ERROR


def test_unknown_method(opened: TestClient) -> None:
    """An unknown (class, method) pair is 503 COMMAND_INVALID."""
    opened.send_raw(encode_frame(FRAME_METHOD, 1, _method_payload(60, 999)))
    assert opened.expect(ConnectionClose).reply_code == COMMAND_INVALID


def test_wrong_field_types(opened: TestClient) -> None:
    """A field of the wrong type is 502, echoing the method's ids."""
    opened.send_raw(
        encode_frame(
            FRAME_METHOD, 1, _method_payload(50, 10, 42, False, False, False, False, False, {})
        )
    )
    close = opened.expect(ConnectionClose)
    assert close.reply_code == SYNTAX_ERROR
    assert (close.class_id, close.method_id) == (50, 10)


def test_method_on_unopened_channel(opened: TestClient) -> None:
    """A method on a channel that is not open is 504 CHANNEL_ERROR."""
    opened.send(7, QueueDeclare("q"))
    close = opened.expect(ConnectionClose)
    assert close.reply_code == CHANNEL_ERROR
    assert (close.class_id, close.method_id) == (50, 10)


def test_content_on_unopened_channel(opened: TestClient) -> None:
    """A content frame on a channel that is not open is 504 as well."""
    opened.send_raw(encode_frame(FRAME_HEADER, 5, encode_header(1, EMPTY_PROPERTIES)))
    assert opened.expect(ConnectionClose).reply_code == CHANNEL_ERROR


def test_reopen_of_open_channel(opened: TestClient) -> None:
    """``channel.open`` on an open channel is 504."""
    opened.send(1, ChannelOpen())
    assert opened.expect(ConnectionClose).reply_code == CHANNEL_ERROR


def test_connection_method_on_other_channel(opened: TestClient) -> None:
    """A ``connection.*`` method off channel 0 is 503."""
    opened.send(1, ConnectionClose(200, "", 0, 0))
    assert opened.expect(ConnectionClose).reply_code == COMMAND_INVALID


def test_channel_method_on_channel_zero(opened: TestClient) -> None:
    """A non-connection method on channel 0 is 503."""
    opened.send(0, ChannelOpen())
    assert opened.expect(ConnectionClose).reply_code == COMMAND_INVALID


def test_server_only_method_from_client(opened: TestClient) -> None:
    """A method only servers send (basic.deliver) is 503 when a client sends it."""
    from amqplike.wire import encode_command

    opened.send_raw(encode_command(1, BasicDeliver("t", 1), None, b""))
    assert opened.expect(ConnectionClose).reply_code == COMMAND_INVALID


def test_channel_max_plus_one(factory: BrokerFactory) -> None:
    """Opening channel_max+1 is 530 NOT_ALLOWED (RELIABILITY P6)."""
    client = TestClient(factory)
    client.handshake(channel_max=3)
    client.open_channel(3)
    client.send(4, ChannelOpen())
    close = client.expect(ConnectionClose)
    assert close.reply_code == NOT_ALLOWED
    assert (close.class_id, close.method_id) == (20, 10)


def test_immediate_publish_not_implemented(opened: TestClient) -> None:
    """``immediate=true`` is 540 NOT_IMPLEMENTED, as RabbitMQ answers."""
    from amqplike.wire import encode_command

    opened.send_raw(encode_command(1, BasicPublish("", "q", False, True), None, b"x"))
    close = opened.expect(ConnectionClose)
    assert close.reply_code == NOT_IMPLEMENTED
    assert (close.class_id, close.method_id) == (60, 40)


def test_body_larger_than_declared(opened: TestClient) -> None:
    """A body longer than its header said is 501."""
    opened.send_raw(
        encode_frame(FRAME_METHOD, 1, _method_payload(60, 40, "", "q", False, False))
        + encode_frame(FRAME_HEADER, 1, encode_header(2, EMPTY_PROPERTIES))
        + encode_frame(FRAME_BODY, 1, b"abc")
    )
    assert opened.expect(ConnectionClose).reply_code == FRAME_ERROR


def test_content_frame_without_method(opened: TestClient) -> None:
    """A body frame with no content method before it is 505."""
    opened.send_raw(encode_frame(FRAME_BODY, 1, b"abc"))
    assert opened.expect(ConnectionClose).reply_code == UNEXPECTED_FRAME


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_oversize_body_closes_channel_only(clock: Clock, byte_by_byte: bool) -> None:
    """A declared body above max_body_bytes is 406 on that channel; the connection goes on."""
    client = TestClient(make_factory(clock=clock, max_body_bytes=10), byte_by_byte=byte_by_byte)
    client.handshake()
    client.open_channel(1)
    client.open_channel(2)
    client.publish(1, b"x" * 11, routing_key="q")
    close = client.expect(ChannelClose, 1)
    assert close.reply_code == PRECONDITION_FAILED
    assert (close.class_id, close.method_id) == (60, 40)
    # The rest of channel 1's content is ignored until close-ok ...
    client.send_raw(encode_frame(FRAME_BODY, 1, b"more"))
    client.send(1, QueueDeclare("ignored"))
    assert client.received() == []
    client.send(1, ChannelCloseOk())
    # ... and channel 2 works meanwhile, channel 1 can be reopened.
    client.send(2, QueueDeclare("q2"))
    assert client.expect(QueueDeclareOk, 2).queue == "q2"
    client.open_channel(1)
    assert not client.closed


def test_soft_error_from_core_closes_channel(opened: TestClient) -> None:
    """A 404 from the core closes the channel with the core's text and the method's ids."""
    opened.send(1, BasicConsume("missing"))
    close = opened.expect(ChannelClose, 1)
    assert close.reply_code == NOT_FOUND
    assert close.reply_text == "NOT_FOUND - no queue 'missing' in vhost '/'"
    assert (close.class_id, close.method_id) == (60, 20)
    opened.send(1, ChannelCloseOk())
    opened.open_channel(1)


def test_channel_close_crossing(opened: TestClient) -> None:
    """If the client closes while the server's close is in flight, both get close-ok."""
    opened.send(1, BasicConsume("missing"))
    opened.expect(ChannelClose, 1)
    opened.send(1, ChannelClose(200, "", 0, 0))
    opened.expect(ChannelCloseOk, 1)
    opened.send(1, ChannelCloseOk())
    opened.open_channel(1)


def test_client_channel_close(opened: TestClient) -> None:
    """``channel.close`` from the client is answered with close-ok and frees the number."""
    opened.send(1, ChannelClose(200, "bye", 0, 0))
    opened.expect(ChannelCloseOk, 1)
    opened.open_channel(1)


def test_bug_in_core_is_541(
    opened: TestClient,
    broker: Broker,
    expected_failures: list[type[BaseException]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected exception is logged as a failure and answered with 541."""
    expected_failures.append(ZeroDivisionError)
    channel = opened.protocol._channels[1].core

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(type(channel), "queue_declare", broken)
    opened.send(1, QueueDeclare("q"))
    close = opened.expect(ConnectionClose)
    assert close.reply_code == INTERNAL_ERROR


def test_server_close_waits_for_close_ok(opened: TestClient, clock: Clock) -> None:
    """After a hard error the server ignores all but close-ok, then drops the socket."""
    opened.send(9, QueueDeclare("q"))
    opened.expect(ConnectionClose)
    opened.send(1, QueueDeclare("q"))
    assert opened.received() == []
    assert not opened.closed
    opened.send(0, ConnectionCloseOk())
    assert opened.closed


def test_server_close_times_out(opened: TestClient, clock: Clock) -> None:
    """Without close-ok the server drops the socket after 3 s."""
    opened.send(9, QueueDeclare("q"))
    opened.expect(ConnectionClose)
    clock.advance(2.9)
    assert not opened.closed
    clock.advance(0.2)
    assert opened.closed
    opened.disconnect()
    assert clock.getDelayedCalls() == []


def test_client_connection_close(opened: TestClient, clock: Clock) -> None:
    """``connection.close`` from the client: close-ok, socket dropped, timers gone."""
    opened.send(0, ConnectionClose(200, "bye", 0, 0))
    opened.expect(ConnectionCloseOk, 0)
    assert opened.closed
    opened.disconnect()
    assert clock.getDelayedCalls() == []


def test_bad_client_does_not_disturb_another(factory: BrokerFactory) -> None:
    """Garbage from one connection closes it alone; a second on the same factory carries on."""
    good = TestClient(factory)
    bad = TestClient(factory)
    good.handshake()
    bad.handshake()
    good.open_channel(1)
    good.send(1, QueueDeclare("jobs"))
    good.expect(QueueDeclareOk)
    good.send(1, BasicConsume("jobs", "c1"))
    good.methods()
    bad.send_raw(b"\x01\x00\x01\x00\x00\x00\x03\xff\xff\xff\xce" + b"\x00" * 50)
    assert bad.expect(ConnectionClose).reply_code == FRAME_ERROR
    bad.disconnect()
    publisher = TestClient(factory)
    publisher.handshake()
    publisher.open_channel(1)
    publisher.publish(1, b"still here", routing_key="jobs")
    [deliver] = good.received()
    assert isinstance(deliver.method, BasicDeliver)
    assert deliver.body == b"still here"
    assert not good.closed


def test_channel_open_ok_reply(opened: TestClient) -> None:
    """A second channel opens alongside the first."""
    opened.send(2, ChannelOpen())
    assert isinstance(opened.expect(ChannelOpenOk, 2), ChannelOpenOk)


def test_each_bad_input_logged_once_with_fields(opened: TestClient) -> None:
    """A channel error and a connection error each produce one warning with peer, channel, code."""
    from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
    from zope.interface import provider

    events: list[dict[str, object]] = []

    @provider(ILogObserver)
    def observer(event: dict[str, object]) -> None:
        if event.get("log_level") == LogLevel.warn:
            events.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        opened.send(1, BasicConsume("missing"))
        opened.send(1, ChannelCloseOk())
        opened.send(3, QueueDeclare("q"))
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [(e["peer"], e["channel"], e["code"]) for e in events] == [
        ("127.0.0.1:40000", 1, NOT_FOUND),
        ("127.0.0.1:40000", 3, CHANNEL_ERROR),
    ]
