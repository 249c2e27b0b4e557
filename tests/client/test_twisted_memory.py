"""The Twisted client in memory: a scripted server over StringTransport, and the real
server joined through iosim, both on a fake clock (no reactor, no sockets)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from zope.interface import implementer

from amqplike.client.exceptions import (
    AMQPConnectionError,
    AMQPHeartbeatTimeout,
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    ConnectionClosedByClient,
    ConsumerCancelled,
    NackError,
    ProbableAuthenticationError,
    RpcTimeout,
    StreamLostError,
    UnroutableError,
)
from amqplike.client.parameters import ConnectionParameters
from amqplike.client.twisted import ReceivedMessage, TwistedChannel, TwistedConnection
from amqplike.client.twisted_rpc import TwistedRpcClient, TwistedRpcServer
from amqplike.core import Broker
from amqplike.properties import BasicProperties
from amqplike.server import BrokerFactory
from amqplike.wire import HEARTBEAT_FRAME, PROTOCOL_HEADER, Command
from amqplike.wire import methods as m
from tests.client.scripted import ClientReader, frames, handshake_replies

T = TypeVar("T")


def result_of(d: Deferred[T]) -> T:
    """The result a Deferred already has (fails the test if it has none or failed)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    value: T = results[0]
    return value


def failure_of(d: Deferred[Any]) -> Failure:
    """The failure a Deferred already has."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results and isinstance(results[0], Failure), f"expected a failure, got {results!r}"
    failure: Failure = results[0]
    return failure


def run(coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Start a coroutine as a Deferred."""
    return Deferred.fromCoroutine(coroutine)


@implementer(ITCPTransport)
class RecordingTransport(StringTransport):
    """A StringTransport that counts writes and records TCP_NODELAY."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.nodelay = False

    def write(self, data: bytes) -> None:
        """Count and keep the bytes."""
        self.writes += 1
        super().write(data)

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Record the option."""
        self.nodelay = enabled

    def getTcpNoDelay(self) -> bool:
        """Report the option."""
        return self.nodelay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """Ignored."""

    def getTcpKeepAlive(self) -> bool:
        """Never on."""
        return False

    def loseWriteConnection(self) -> None:
        """Ignored."""

    def abortConnection(self) -> None:
        """As loseConnection."""
        self.loseConnection()


class Scripted:
    """A TwistedConnection talking to a test that plays the server."""

    def __init__(self, **params: Any) -> None:
        self.clock = Clock()
        self.transport = RecordingTransport()
        self.conn = TwistedConnection(ConnectionParameters(**params), self.clock)
        self.reader = ClientReader()
        self.conn.makeConnection(self.transport)

    def sent(self) -> list[Command]:
        """Commands written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return self.reader.feed(data)

    def server(self, *chunks: bytes) -> None:
        """Deliver server bytes in one dataReceived."""
        self.conn.dataReceived(b"".join(chunks))

    def open(self, heartbeat: int = 0) -> None:
        """Run the handshake."""
        self.sent()
        self.server(*handshake_replies(heartbeat=heartbeat))
        self.sent()
        assert result_of(self.conn.ready) is self.conn

    def channel(self) -> TwistedChannel:
        """Open channel 1."""
        d = self.conn.channel()
        self.clock.advance(0)
        (command,) = self.sent()
        self.server(frames(command.channel, m.ChannelOpenOk()))
        return result_of(d)

    def lose(self) -> None:
        """Tell the protocol the transport closed (StringTransport does not)."""
        self.conn.connectionLost(Failure(ConnectionError("closed")))


def test_handshake_over_the_transport() -> None:
    """connectionMade sends the header and sets TCP_NODELAY; ready fires after open-ok."""
    s = Scripted()
    assert s.transport.value() == PROTOCOL_HEADER
    assert s.transport.nodelay
    s.open()
    assert s.conn.is_open
    assert s.clock.getDelayedCalls() == []  # the handshake timer is gone


def test_output_of_one_turn_is_written_once() -> None:
    """Calls made in one reactor turn go out in a single write on the next turn."""
    s = Scripted()
    s.open()
    ch = s.channel()
    before = s.transport.writes
    declares = [ch.queue_declare(f"q{i}") for i in range(3)]
    for i in range(10):
        ch.basic_publish("", "q0", b"%d" % i)
    assert s.transport.writes == before  # nothing yet
    s.clock.advance(0)
    assert s.transport.writes == before + 1
    sent = s.sent()
    assert [type(c.method) for c in sent] == [m.QueueDeclare] * 3 + [m.BasicPublish] * 10
    assert not any(d.called for d in declares)


def test_calls_made_from_callbacks_are_flushed_with_the_batch() -> None:
    """Requests made while replies are handled leave in one write at the end of dataReceived."""
    s = Scripted()
    s.open()
    ch = s.channel()
    d = ch.queue_declare("q")
    s.clock.advance(0)
    s.sent()
    bound: list[Deferred[Any]] = []
    d.addCallback(lambda frame: bound.append(ch.queue_bind(frame.method.queue, "amq.direct")))
    before = s.transport.writes
    s.server(frames(1, m.QueueDeclareOk("q", 0, 0)))
    assert s.transport.writes == before + 1
    assert [c.method for c in s.sent()] == [m.QueueBind("q", "amq.direct", "q")]
    assert s.clock.getDelayedCalls() == []


def test_replies_fire_the_matching_deferreds() -> None:
    """Replies resolve requests in order; frames carry pika's shape."""
    s = Scripted()
    s.open()
    ch = s.channel()
    declare = ch.queue_declare("")
    get = ch.basic_get("jobs")
    empty = ch.basic_get("jobs")
    s.clock.advance(0)
    s.sent()
    s.server(
        frames(1, m.QueueDeclareOk("amq.gen-1", 2, 0)),
        frames(1, m.BasicGetOk(1, False, "", "jobs", 0), BasicProperties(type="t"), b"body"),
        frames(1, m.BasicGetEmpty()),
    )
    frame = result_of(declare)
    assert (frame.channel_number, frame.method.queue, frame.method.message_count) == (
        1, "amq.gen-1", 2
    )
    message = result_of(get)
    assert isinstance(message, ReceivedMessage)
    assert (message.channel, message.method.delivery_tag, message.properties.type, message.body) == (
        ch, 1, "t", b"body"
    )
    assert result_of(empty) is None


def test_broker_channel_close_fails_waiters_queues_and_later_calls() -> None:
    """channel.close from the broker: close-ok is sent and every waiter gets ChannelClosedByBroker."""
    s = Scripted()
    s.open()
    ch = s.channel()
    consume = ch.basic_consume("jobs", consumer_tag="c1")
    s.clock.advance(0)
    s.server(frames(1, m.BasicConsumeOk("c1")))
    queue, tag = result_of(consume)
    assert tag == "c1"
    waiting_get = queue.get()
    pending = ch.queue_declare("other", passive=True)
    s.clock.advance(0)
    s.sent()
    s.server(frames(1, m.ChannelClose(404, "NOT_FOUND - no queue 'other' in vhost '/'", 50, 10)))
    for d in (pending, waiting_get, queue.get(), ch.queue_declare("x")):
        error = failure_of(d).value
        assert isinstance(error, ChannelClosedByBroker) and error.reply_code == 404
    assert [c.method for c in s.sent()] == [m.ChannelCloseOk()]
    assert ch.is_closed and s.conn.is_open


def test_broker_connection_close_fails_everything() -> None:
    """connection.close from the broker: close-ok, ConnectionClosedByBroker, transport closed."""
    s = Scripted()
    s.open()
    ch = s.channel()
    pending = ch.basic_qos(prefetch_count=1)
    s.clock.advance(0)
    s.sent()
    s.server(frames(0, m.ConnectionClose(320, "CONNECTION_FORCED - shutdown", 0, 0)))
    assert isinstance(failure_of(pending).value, ConnectionClosedByBroker)
    assert isinstance(result_of(s.conn.closed), ConnectionClosedByBroker)
    assert [c.method for c in s.sent()] == [m.ConnectionCloseOk()]
    assert s.transport.disconnecting
    s.lose()
    assert s.clock.getDelayedCalls() == []


def test_client_close_fires_after_close_ok_and_connection_lost() -> None:
    """close() sends connection.close; its Deferred fires once the socket is gone."""
    s = Scripted()
    s.open()
    d = s.conn.close()
    s.clock.advance(0)
    assert [c.method for c in s.sent()] == [m.ConnectionClose(200, "Normal shutdown", 0, 0)]
    assert not d.called
    s.server(frames(0, m.ConnectionCloseOk()))
    assert s.transport.disconnecting and not d.called
    s.lose()
    assert result_of(d) is None
    assert isinstance(result_of(s.conn.closed), ConnectionClosedByClient)


def test_heartbeats_on_the_clock() -> None:
    """With heartbeat 10: a heartbeat leaves after 5 s idle; 20 s of server silence fails the
    connection with AMQPHeartbeatTimeout."""
    s = Scripted()
    s.open(heartbeat=10)
    ch = s.channel()
    pending = ch.basic_qos(prefetch_count=1)
    s.clock.advance(0)
    s.sent()
    s.clock.advance(5)
    assert s.transport.value() == HEARTBEAT_FRAME
    s.sent()
    s.server(HEARTBEAT_FRAME)  # alive at t=5
    s.clock.advance(14.9)
    assert not pending.called
    s.clock.advance(0.1 + 5)  # 20 s after the last frame from the server
    assert isinstance(failure_of(pending).value, AMQPHeartbeatTimeout)
    assert s.transport.disconnecting
    s.lose()
    assert s.clock.getDelayedCalls() == []


def test_handshake_timeout() -> None:
    """A server that never answers fails ``ready`` after socket_timeout seconds."""
    s = Scripted(socket_timeout=3)
    s.clock.advance(3)
    assert isinstance(failure_of(s.conn.ready).value, AMQPConnectionError)
    assert s.transport.disconnecting


def test_refused_login_fails_ready() -> None:
    """403 after start-ok fails ``ready`` with ProbableAuthenticationError."""
    s = Scripted()
    s.server(handshake_replies()[0])
    s.server(frames(0, m.ConnectionClose(403, "ACCESS_REFUSED - login refused", 10, 11)))
    error = failure_of(s.conn.ready).value
    assert isinstance(error, ProbableAuthenticationError) and error.reply_code == 403


def test_lost_transport_fails_pending_with_stream_lost() -> None:
    """A dropped socket fails pending calls with StreamLostError."""
    s = Scripted()
    s.open()
    ch = s.channel()
    pending = ch.queue_declare("q")
    s.lose()
    assert isinstance(failure_of(pending).value, StreamLostError)
    assert isinstance(result_of(s.conn.closed), StreamLostError)
    assert s.clock.getDelayedCalls() == []


# --- the real server, in memory ---


class Joined:
    """A TwistedConnection joined to the real BrokerFactory through iosim."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.factory = BrokerFactory(Broker(), self.clock)
        loopback = IPv4Address("TCP", "127.0.0.1", 40000)
        self.conn, _server, self.pump = connectedServerAndClient(
            lambda: self.factory.buildProtocol(None),
            lambda: TwistedConnection(ConnectionParameters(), self.clock),
            serverTransportFactory=lambda p: FakeTransport(p, True, peerAddress=loopback),
            clock=self.clock,
        )
        self.pump.flush()
        assert result_of(self.conn.ready) is self.conn

    def wait(self, d: Deferred[T]) -> T:
        """Pump until ``d`` fired; return its result."""
        for _ in range(1000):
            if d.called:
                break
            self.pump.flush()
        return result_of(d)

    def wait_failure(self, d: Deferred[Any]) -> Failure:
        """Pump until ``d`` failed; return the failure."""
        for _ in range(1000):
            if d.called:
                break
            self.pump.flush()
        return failure_of(d)


@pytest.fixture
def joined() -> Joined:
    """A client connected to an in-memory real broker."""
    return Joined()


def test_in_memory_publish_consume_ack(joined: Joined) -> None:
    """Messages published are consumed from the queue object in order and acked."""
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.queue_declare("jobs"))
    for i in range(3):
        ch.basic_publish("", "jobs", b"%d" % i)
    queue, _tag = joined.wait(ch.basic_consume("jobs"))
    bodies = []
    for _ in range(3):
        channel, method, _props, body = joined.wait(queue.get())
        assert channel is ch
        bodies.append(body)
        ch.basic_ack(method.delivery_tag)
    assert bodies == [b"0", b"1", b"2"]
    frame = joined.wait(ch.queue_declare("jobs", passive=True))
    assert (frame.method.message_count, frame.method.consumer_count) == (0, 1)


def test_in_memory_cancel_closes_the_queue_object(joined: Joined) -> None:
    """basic_cancel fails the consumer's pending get with ConsumerCancelled."""
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.queue_declare("jobs"))
    queue, tag = joined.wait(ch.basic_consume("jobs"))
    waiting = queue.get()
    joined.wait(ch.basic_cancel(tag))
    assert isinstance(failure_of(waiting).value, ConsumerCancelled)
    assert ch.consumer_tags == []


def test_in_memory_confirms_and_unroutable(joined: Joined) -> None:
    """In confirm mode publishes fire on ack; a returned mandatory one fails UnroutableError."""
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.confirm_delivery())
    joined.wait(ch.queue_declare("jobs"))
    acks = joined.wait(gatherResults([ch.basic_publish("", "jobs", b"x") for _ in range(50)]))
    assert all(isinstance(a, m.BasicAck) for a in acks)
    failure = joined.wait_failure(ch.basic_publish("", "nowhere", b"lost", mandatory=True))
    error = failure.value
    assert isinstance(error, UnroutableError)
    assert error.messages[0].body == b"lost" and error.messages[0].channel is ch
    assert not isinstance(error, NackError)


def test_in_memory_return_callback(joined: Joined) -> None:
    """Outside confirm mode returned messages go to add_on_return_callback."""
    ch = joined.wait(joined.conn.channel())
    returned: list[ReceivedMessage] = []
    ch.add_on_return_callback(returned.append)
    ch.basic_publish("", "nowhere", b"back", mandatory=True)
    joined.wait(ch.queue_declare("sync-point"))
    assert [r.body for r in returned] == [b"back"]
    assert returned[0].method.reply_code == 312


def test_in_memory_channel_closed_by_broker(joined: Joined) -> None:
    """A passive declare of a missing queue fails with ChannelClosedByBroker(404)."""
    ch = joined.wait(joined.conn.channel())
    error = joined.wait_failure(ch.queue_declare("missing", passive=True)).value
    assert isinstance(error, ChannelClosedByBroker) and error.reply_code == 404
    assert ch.is_closed
    other = joined.wait(joined.conn.channel())
    assert other.is_open


@pytest.mark.parametrize("reply_queue", ["auto", "direct", "exclusive"])
def test_in_memory_rpc_hundred_concurrent_calls(joined: Joined, reply_queue: str) -> None:
    """100 concurrent RPC calls each get the reply matching their correlation_id."""
    server_channel = joined.wait(joined.conn.channel())
    joined.wait(server_channel.queue_declare("rpc"))

    def handler(body: bytes, props: BasicProperties) -> Deferred[bytes] | bytes:
        if body.endswith(b"7"):
            d: Deferred[bytes] = Deferred()
            joined.clock.callLater(0, d.callback, body[::-1])  # answered later
            return d
        return body[::-1]

    server = TwistedRpcServer(server_channel, "rpc", handler, prefetch_count=20)
    joined.wait(server.start())
    client = TwistedRpcClient(
        joined.wait(joined.conn.channel()), reply_queue=reply_queue  # type: ignore[arg-type]
    )
    bodies = [b"req-%03d" % i for i in range(100)]
    replies = joined.wait(gatherResults([client.call("rpc", b) for b in bodies]))
    assert replies == [b[::-1] for b in bodies]
    assert client.reply_queue in ("direct", "exclusive")
    assert client.in_flight == 0


def test_in_memory_rpc_timeout(joined: Joined) -> None:
    """A call nobody answers fails with RpcTimeout once the clock passes its timeout."""
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.queue_declare("silent"))
    client = TwistedRpcClient(ch)
    joined.wait(client.setup())
    d = client.call("silent", b"x", timeout=5)
    joined.pump.flush()
    joined.clock.advance(4.9)
    assert not d.called
    joined.clock.advance(0.1)
    error = failure_of(d).value
    assert isinstance(error, RpcTimeout) and error.timeout == 5
    assert client.in_flight == 0


def test_in_memory_rpc_handler_failure_rejects(
    joined: Joined, expected_failures: list[type[BaseException]]
) -> None:
    """A failing handler is logged and its request rejected without requeue."""
    expected_failures.append(ZeroDivisionError)
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.queue_declare("rpc"))
    server = TwistedRpcServer(ch, "rpc", lambda body, props: str(1 // 0))
    joined.wait(server.start())
    client = TwistedRpcClient(joined.wait(joined.conn.channel()))
    d = client.call("rpc", b"x", timeout=1)
    joined.pump.flush()
    joined.clock.advance(1)
    assert isinstance(joined.wait_failure(d).value, RpcTimeout)
    frame = joined.wait(ch.queue_declare("rpc", passive=True))
    assert frame.method.message_count == 0
    joined.wait(server.stop())


def test_in_memory_close(joined: Joined) -> None:
    """Closing a channel then the connection completes cleanly, leaving no timers."""
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.close())
    assert ch.is_closed
    d = joined.conn.close()
    joined.wait(d)
    assert joined.conn.is_closed
    assert joined.clock.getDelayedCalls() == []




def test_in_memory_broker_cancel_closes_the_queue_object(joined: Joined) -> None:
    """Deleting a consumed queue makes the broker cancel the consumer: get() fails ConsumerCancelled."""
    ch = joined.wait(joined.conn.channel())
    joined.wait(ch.queue_declare("doomed"))
    queue, _tag = joined.wait(ch.basic_consume("doomed"))
    waiting = queue.get()
    other = joined.wait(joined.conn.channel())
    joined.wait(other.queue_delete("doomed"))
    assert isinstance(joined.wait_failure(waiting).value, ConsumerCancelled)
    assert ch.consumer_tags == [] and ch.is_open


def test_in_memory_failing_user_callback_is_logged_not_fatal(
    joined: Joined, expected_failures: list[type[BaseException]]
) -> None:
    """A return callback that raises is logged; the connection and channel carry on."""
    expected_failures.append(RuntimeError)
    ch = joined.wait(joined.conn.channel())

    def broken(message: ReceivedMessage) -> None:
        raise RuntimeError("user bug")

    ch.add_on_return_callback(broken)
    ch.basic_publish("", "nowhere", b"back", mandatory=True)
    joined.wait(ch.queue_declare("after"))
    assert joined.conn.is_open and ch.is_open
