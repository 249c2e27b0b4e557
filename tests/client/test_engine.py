"""The sans-IO client engine, driven by scripted server frames and a fake clock."""

from __future__ import annotations

import pytest

from amqplike.client._engine import (
    Blocked,
    ChannelClosedEvent,
    ClientEngine,
    Confirmed,
    ConnectionClosedEvent,
    ConnectionOpened,
    ConsumerCancelledByBroker,
    Delivery,
    Event,
    Reply,
    Returned,
    Unblocked,
)
from amqplike.client.exceptions import (
    AMQPConnectionError,
    AMQPHeartbeatTimeout,
    ChannelClosedByBroker,
    ChannelClosedByClient,
    ChannelWrongStateError,
    ConnectionClosedByBroker,
    ConnectionClosedByClient,
    ConnectionWrongStateError,
    IncompatibleProtocolError,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
    StreamLostError,
)
from amqplike.client.parameters import ConnectionParameters, PlainCredentials
from amqplike.properties import BasicProperties
from amqplike.wire import (
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
    Command,
    encode_frame,
    encode_header,
    encode_method_frame,
)
from amqplike.wire import methods as m
from amqplike.wire.frames import FRAME_BODY, FRAME_HEADER
from tests.client.scripted import ClientReader, frames, handshake_replies


class Harness:
    """An engine plus the server's view of what it wrote."""

    def __init__(self, **params: object) -> None:
        self.engine = ClientEngine(ConnectionParameters(**params))  # type: ignore[arg-type]
        self.reader = ClientReader()
        self.now = 1000.0

    def sent(self) -> list[Command]:
        """Commands the client wrote since the last call."""
        return self.reader.feed(self.engine.data_to_send(self.now))

    def server(self, *chunks: bytes) -> list[Event]:
        """Deliver server bytes; return the events."""
        events: list[Event] = []
        for chunk in chunks:
            events += self.engine.receive_data(chunk, self.now)
        return events

    def open(self, heartbeat: int = 0) -> None:
        """Run the whole handshake."""
        self.engine.start(self.now)
        self.sent()
        for step in handshake_replies(heartbeat=heartbeat):
            self.server(step)
        self.sent()
        assert self.engine.is_open

    def open_channel(self) -> int:
        """Open a channel and return its number."""
        number, token = self.engine.open_channel()
        self.sent()
        (reply,) = self.server(frames(number, m.ChannelOpenOk()))
        assert isinstance(reply, Reply) and reply.token == token
        return number


def test_handshake_sends_header_plain_credentials_tune_ok_and_open() -> None:
    """The client speaks first, logs in with PLAIN, accepts the tune and opens the vhost."""
    h = Harness(credentials=PlainCredentials("alice", "s3cret"), virtual_host="prod")
    h.engine.start(h.now)
    assert h.engine.data_to_send(h.now) == PROTOCOL_HEADER
    start, tune, open_ok = handshake_replies(heartbeat=60)
    assert h.server(start) == []
    (start_ok,) = h.reader.feed(PROTOCOL_HEADER + h.engine.data_to_send(h.now))
    assert isinstance(start_ok.method, m.ConnectionStartOk)
    assert start_ok.method.mechanism == "PLAIN"
    assert start_ok.method.response == b"\0alice\0s3cret"
    assert start_ok.method.client_properties["capabilities"]["publisher_confirms"] is True
    assert h.server(tune) == []
    tune_ok, open_ = h.sent()
    assert tune_ok.method == m.ConnectionTuneOk(2047, 131072, 60)
    assert open_.method == m.ConnectionOpen("prod")
    (event,) = h.server(open_ok)
    assert isinstance(event, ConnectionOpened)
    assert event.server_properties["product"] == "amqplike"
    assert h.engine.is_open


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        ({"heartbeat": 10}, (2047, 131072, 60), (2047, 131072, 10)),
        ({"heartbeat": None}, (2047, 131072, 60), (2047, 131072, 60)),
        ({"heartbeat": 0}, (2047, 131072, 60), (2047, 131072, 0)),
        ({"heartbeat": 90}, (2047, 131072, 60), (2047, 131072, 60)),
        ({"frame_max": 65536, "channel_max": 10}, (2047, 131072, 0), (10, 65536, 0)),
        ({"frame_max": 1000}, (0, 131072, 0), (65535, 4096, 0)),
        ({"channel_max": 0}, (2047, 0, 0), (2047, 131072, 0)),
    ],
)
def test_tune_ok_takes_the_smaller_of_each_limit(
    client: dict[str, int | None], server: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    """tune-ok never exceeds the server's values; 0 means "no limit" except for heartbeat."""
    h = Harness(**client)
    h.engine.start(h.now)
    h.sent()
    start, _, _ = handshake_replies()
    h.server(start, frames(0, m.ConnectionTune(*server)))
    _start_ok, tune_ok, _open = h.sent()
    assert tune_ok.method == m.ConnectionTuneOk(*expected)
    assert (h.engine.channel_max, h.engine.frame_max, h.engine.heartbeat) == expected


def test_replies_match_requests_in_order_per_channel() -> None:
    """Each *-ok resolves the oldest request waiting on its channel, channels independently."""
    h = Harness()
    h.open()
    one, two = h.open_channel(), h.open_channel()
    assert (one, two) == (1, 2)
    t1 = h.engine.call(one, m.QueueDeclare("a"))
    t2 = h.engine.call(two, m.QueueDeclare("b"))
    t3 = h.engine.call(one, m.QueueBind("a", "amq.direct", "a"))
    assert [c.method for c in h.sent()] == [
        m.QueueDeclare("a"),
        m.QueueDeclare("b"),
        m.QueueBind("a", "amq.direct", "a"),
    ]
    events = h.server(
        frames(two, m.QueueDeclareOk("b", 0, 0)),
        frames(one, m.QueueDeclareOk("a", 3, 1)),
        frames(one, m.QueueBindOk()),
    )
    assert [(e.channel, e.token, e.method) for e in events if isinstance(e, Reply)] == [
        (two, t2, m.QueueDeclareOk("b", 0, 0)),
        (one, t1, m.QueueDeclareOk("a", 3, 1)),
        (one, t3, m.QueueBindOk()),
    ]


def test_basic_get_reply_carries_content_or_is_empty() -> None:
    """basic.get resolves with get-ok plus properties and body, or with get-empty."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    t1 = h.engine.call(ch, m.BasicGet("q", False))
    t2 = h.engine.call(ch, m.BasicGet("q", False))
    props = BasicProperties(content_type="text/plain", headers={"k": 1})
    got, empty = h.server(
        frames(ch, m.BasicGetOk(7, False, "", "q", 0), props, b"payload"),
        frames(ch, m.BasicGetEmpty()),
    )
    assert isinstance(got, Reply) and isinstance(empty, Reply)
    assert (got.token, got.method.delivery_tag, got.properties, got.body) == (  # type: ignore[attr-defined]
        t1, 7, props, b"payload"
    )
    assert (empty.token, type(empty.method)) == (t2, m.BasicGetEmpty)


def test_deliveries_are_assembled_even_one_byte_at_a_time() -> None:
    """A delivery whose body spans frames, fed byte by byte, arrives as one Delivery event."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    data = b"".join(
        (
            encode_method_frame(ch, m.BasicDeliver("ctag", 1, False, "ex", "rk")),
            encode_frame(
                FRAME_HEADER, ch, encode_header(6, BasicProperties(content_type="text/plain"))
            ),
            encode_frame(FRAME_BODY, ch, b"hel"),
            encode_frame(FRAME_BODY, ch, b"lo!"),
        )
    )
    events = h.server(*(data[i : i + 1] for i in range(len(data))))
    (delivery,) = events
    assert isinstance(delivery, Delivery)
    assert delivery.method == m.BasicDeliver("ctag", 1, False, "ex", "rk")
    assert delivery.properties.content_type == "text/plain"
    assert delivery.body == b"hello!"


def test_server_channel_close_fails_pending_and_is_answered() -> None:
    """channel.close from the server: close-ok is sent, pending requests are reported, number freed."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    token = h.engine.call(ch, m.QueueDeclare("q", passive=True))
    h.sent()
    (event,) = h.server(
        frames(ch, m.ChannelClose(404, "NOT_FOUND - no queue 'q' in vhost '/'", 50, 10))
    )
    assert isinstance(event, ChannelClosedEvent)
    assert isinstance(event.error, ChannelClosedByBroker)
    assert (event.error.reply_code, event.error.reply_text) == (
        404, "NOT_FOUND - no queue 'q' in vhost '/'"
    )
    assert event.pending == (token,)
    assert [c.method for c in h.sent()] == [m.ChannelCloseOk()]
    with pytest.raises(ChannelWrongStateError):
        h.engine.call(ch, m.QueueDeclare("q"))
    assert h.engine.open_channel()[0] == ch


def test_client_channel_close_ignores_other_frames_until_close_ok() -> None:
    """After channel.close the client drops deliveries and reports ChannelClosedByClient on close-ok."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    token = h.engine.call(ch, m.BasicQos(0, 1, False))
    h.engine.close_channel(ch, 200, "bye")
    assert [c.method for c in h.sent()][-1] == m.ChannelClose(200, "bye", 0, 0)
    assert h.server(frames(ch, m.BasicDeliver("t", 1), None, b"x")) == []
    (event,) = h.server(frames(ch, m.ChannelCloseOk()))
    assert isinstance(event, ChannelClosedEvent)
    assert isinstance(event.error, ChannelClosedByClient)
    assert event.pending == (token,)


def test_server_connection_close_is_answered_and_closes_everything() -> None:
    """connection.close from the server: close-ok, then every channel and the connection close."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    token = h.engine.call(ch, m.QueueDeclare("q"))
    h.sent()
    events = h.server(frames(0, m.ConnectionClose(320, "CONNECTION_FORCED - shutdown", 0, 0)))
    assert [type(e) for e in events] == [ChannelClosedEvent, ConnectionClosedEvent]
    assert events[0].pending == (token,)  # type: ignore[attr-defined]
    error = events[1].error  # type: ignore[attr-defined]
    assert isinstance(error, ConnectionClosedByBroker)
    assert error.reply_code == 320
    assert [c.method for c in h.sent()] == [m.ConnectionCloseOk()]
    assert h.engine.is_closed
    with pytest.raises(ConnectionWrongStateError):
        h.engine.open_channel()


@pytest.mark.parametrize(
    ("steps", "error_type"),
    [(1, ProbableAuthenticationError), (2, ProbableAccessDeniedError)],
)
def test_close_during_handshake_is_an_authentication_or_access_error(
    steps: int, error_type: type[Exception]
) -> None:
    """403 after start-ok means bad credentials; a close after open means the vhost was refused."""
    h = Harness()
    h.engine.start(h.now)
    h.server(*handshake_replies()[:steps])
    events = h.server(frames(0, m.ConnectionClose(403, "ACCESS_REFUSED - login refused", 10, 11)))
    (closed,) = events
    assert isinstance(closed, ConnectionClosedEvent)
    assert type(closed.error) is error_type
    assert isinstance(closed.error, ConnectionClosedByBroker)


def test_client_close_waits_for_close_ok() -> None:
    """close() sends connection.close, ignores deliveries, and ends on close-ok."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    h.engine.close(200, "done")
    assert [c.method for c in h.sent()] == [m.ConnectionClose(200, "done", 0, 0)]
    assert not h.engine.is_open and not h.engine.is_closed
    assert h.server(frames(ch, m.BasicDeliver("t", 1), None, b"x")) == []
    events = h.server(frames(0, m.ConnectionCloseOk()))
    assert [type(e) for e in events] == [ChannelClosedEvent, ConnectionClosedEvent]
    assert isinstance(events[-1].error, ConnectionClosedByClient)  # type: ignore[attr-defined]
    assert h.engine.is_closed


def test_heartbeat_sent_after_half_interval_of_silence() -> None:
    """With heartbeat 10, a heartbeat frame goes out once we were silent for 5 s."""
    h = Harness()
    h.open(heartbeat=10)
    assert h.engine.next_deadline() == h.now + 5
    h.now += 4.9
    assert h.engine.tick(h.now) == []
    assert h.engine.data_to_send(h.now) == b""
    h.now += 0.1
    assert h.engine.tick(h.now) == []
    assert h.engine.data_to_send(h.now) == HEARTBEAT_FRAME
    assert h.engine.next_deadline() == h.now + 5


def test_server_declared_dead_after_two_silent_intervals() -> None:
    """No frame from the server for 2h seconds closes the connection with AMQPHeartbeatTimeout."""
    h = Harness()
    h.open(heartbeat=10)
    h.now += 15
    h.server(HEARTBEAT_FRAME)  # a sign of life resets the clock
    h.now += 19.9
    h.engine.data_to_send(h.now)
    assert [e for e in h.engine.tick(h.now) if isinstance(e, ConnectionClosedEvent)] == []
    h.now += 0.1
    events = h.engine.tick(h.now)
    assert isinstance(events[-1], ConnectionClosedEvent)
    assert isinstance(events[-1].error, AMQPHeartbeatTimeout)
    assert h.engine.next_deadline() is None


def test_no_heartbeat_deadline_when_disabled() -> None:
    """heartbeat 0 means no timer at all."""
    h = Harness()
    h.open(heartbeat=0)
    assert h.engine.next_deadline() is None
    h.now += 10_000
    assert h.engine.tick(h.now) == []
    assert h.engine.data_to_send(h.now) == b""


def test_confirms_number_publishes_and_expand_multiple_acks() -> None:
    """In confirm mode publishes are numbered from 1 and a multiple ack lists every tag it covers."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    assert h.engine.publish(ch, "", "q", b"before") == 0
    h.engine.call(ch, m.ConfirmSelect())
    h.server(frames(ch, m.ConfirmSelectOk()))
    tags = [h.engine.publish(ch, "", "q", b"%d" % i) for i in range(4)]
    assert tags == [1, 2, 3, 4]
    (nack,) = h.server(frames(ch, m.BasicNack(2, False, False)))
    assert isinstance(nack, Confirmed) and (nack.delivery_tags, nack.ack) == ([2], False)
    (ack,) = h.server(frames(ch, m.BasicAck(3, True)))
    assert isinstance(ack, Confirmed) and (ack.delivery_tags, ack.ack) == ([1, 3], True)
    assert h.engine.unconfirmed_count(ch) == 1


def test_return_before_ack_is_attached_to_that_confirm() -> None:
    """A basic.return followed by its ack yields Returned, then a Confirmed carrying the message."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    h.engine.call(ch, m.ConfirmSelect())
    h.server(frames(ch, m.ConfirmSelectOk()))
    tag = h.engine.publish(ch, "", "nowhere", b"lost", mandatory=True)
    returned, confirmed = h.server(
        frames(ch, m.BasicReturn(312, "NO_ROUTE", "", "nowhere"), None, b"lost"),
        frames(ch, m.BasicAck(tag, False)),
    )
    assert isinstance(returned, Returned) and returned.body == b"lost"
    assert isinstance(confirmed, Confirmed)
    assert confirmed.returned is not None and confirmed.returned.body == b"lost"
    assert confirmed.returned.method.reply_code == 312


def test_publish_splits_large_bodies_at_frame_max() -> None:
    """A body larger than frame_max - 8 goes out in several BODY frames that reassemble."""
    h = Harness(frame_max=4096)
    h.open()
    ch = h.open_channel()
    body = bytes(range(256)) * 40
    h.engine.publish(ch, "ex", "rk", body, BasicProperties(message_id="m1"), mandatory=True)
    (command,) = h.sent()
    assert command.method == m.BasicPublish("ex", "rk", True, False)
    assert command.body == body and command.properties.message_id == "m1"


def test_broker_cancel_flow_and_blocked_events() -> None:
    """basic.cancel from the broker, channel.flow (answered) and blocked/unblocked are reported."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    events = h.server(
        frames(ch, m.BasicCancel("ctag1", True)),
        frames(ch, m.ChannelFlow(False)),
        frames(0, m.ConnectionBlocked("low on memory")),
        frames(0, m.ConnectionUnblocked()),
    )
    assert [type(e) for e in events] == [ConsumerCancelledByBroker, Blocked, Unblocked]
    assert events[0].method.consumer_tag == "ctag1"  # type: ignore[attr-defined]
    assert [c.method for c in h.sent()] == [m.ChannelFlowOk(False)]


def test_foreign_protocol_header_is_incompatible_protocol() -> None:
    """A server answering with its own protocol header fails the connection clearly."""
    h = Harness()
    h.engine.start(h.now)
    (event,) = h.server(b"AMQP\x00\x00\x09\x01")
    assert isinstance(event, ConnectionClosedEvent)
    assert isinstance(event.error, IncompatibleProtocolError)


def test_malformed_frame_closes_with_frame_error() -> None:
    """A bad frame makes the client send connection.close 501 and give up."""
    h = Harness()
    h.open()
    events = h.server(b"\x09\x00\x00\x00\x00\x00\x00\xce")
    assert isinstance(events[-1], ConnectionClosedEvent)
    assert isinstance(events[-1].error, AMQPConnectionError)
    (close,) = h.sent()
    assert isinstance(close.method, m.ConnectionClose) and close.method.reply_code == 501


def test_unexpected_reply_is_a_protocol_error() -> None:
    """A reply nobody asked for is 505 UNEXPECTED_FRAME, not silently dropped."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    events = h.server(frames(ch, m.QueueDeclareOk("q", 0, 0)))
    assert isinstance(events[-1], ConnectionClosedEvent)
    (close,) = h.sent()
    assert close.method.reply_code == 505  # type: ignore[attr-defined]


def test_connection_lost_fails_everything_with_stream_lost() -> None:
    """Losing the transport while open reports StreamLostError with pending tokens."""
    h = Harness()
    h.open()
    ch = h.open_channel()
    token = h.engine.call(ch, m.BasicQos(0, 5, False))
    events = h.engine.connection_lost("reset by peer")
    assert events[0].pending == (token,)  # type: ignore[attr-defined]
    assert isinstance(events[-1].error, StreamLostError)  # type: ignore[attr-defined]
    assert h.engine.connection_lost() == []
