"""Request-reply with the blocking client: RpcClient and RpcServer against a real broker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from amqplike.client.exceptions import RpcTimeout
from amqplike.client.rpc import RpcClient, RpcServer, correlation_ids
from amqplike.client.sync import BlockingConnection
from amqplike.properties import BasicProperties


class ServerThread:
    """An RpcServer on its own connection and thread (a connection serves one thread)."""

    def __init__(
        self, url: str, queue: str, handler: Callable[[bytes, BasicProperties], bytes]
    ) -> None:
        self.ready = threading.Event()
        self.errors: list[BaseException] = []
        self._url, self._queue, self._handler = url, queue, handler
        self._connection: BlockingConnection | None = None
        self._server: RpcServer | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        try:
            self._connection = BlockingConnection(self._url)
            channel = self._connection.channel()
            channel.queue_declare(self._queue)
            self._server = RpcServer(channel, self._queue, self._handler, prefetch_count=50)
            self.ready.set()
            self._server.serve_forever()
            self._connection.close()
        except BaseException as e:  # reported by stop()
            self.errors.append(e)
            self.ready.set()

    def stop(self) -> None:
        """Cancel the consumer from the server's own thread and wait for the thread to end."""
        assert self._connection is not None and self._server is not None
        self._connection.add_callback_threadsafe(self._server.stop)
        self._thread.join(10)
        assert not self._thread.is_alive()
        assert self.errors == []


@pytest.fixture
def upper_server(broker_url: str, qname: str) -> Iterator[str]:
    """An RPC server answering with the upper-cased request on queue ``qname``."""
    server = ServerThread(broker_url, qname, lambda body, props: body.upper())
    yield qname
    server.stop()


@pytest.mark.parametrize("reply_queue", ["auto", "direct", "exclusive"])
def test_call_returns_the_reply(
    connection: BlockingConnection, upper_server: str, reply_queue: str
) -> None:
    """call() blocks until the matching reply and returns its body."""
    rpc = RpcClient(connection, reply_queue=reply_queue)  # type: ignore[arg-type]
    assert rpc.reply_queue in ("direct", "exclusive")
    assert rpc.call(upper_server, b"hello") == b"HELLO"
    assert rpc.in_flight == 0


def test_a_hundred_concurrent_calls_are_matched_by_correlation_id(
    connection: BlockingConnection, upper_server: str
) -> None:
    """100 calls in flight at once each get their own reply."""
    rpc = RpcClient(connection.channel())
    bodies = [b"req-%03d" % i for i in range(100)]
    pending = [rpc.call_async(upper_server, body) for body in bodies]
    assert len({p.correlation_id for p in pending}) == 100
    # Collect in reverse order: replies that arrive early are kept for their caller.
    replies = [p.result() for p in reversed(pending)]
    assert replies == [b.upper() for b in reversed(bodies)]
    assert rpc.call_many(upper_server, bodies) == [b.upper() for b in bodies]


def test_call_times_out_with_rpc_timeout(connection: BlockingConnection, qname: str) -> None:
    """Nobody answers: RpcTimeout names the call, and the client forgets it."""
    channel = connection.channel()
    channel.queue_declare(qname)
    rpc = RpcClient(channel)
    with pytest.raises(RpcTimeout) as info:
        rpc.call(qname, b"anyone?", timeout=0.05)
    assert info.value.timeout == 0.05
    assert rpc.in_flight == 0


def test_handler_error_rejects_the_request_without_requeue(
    broker_url: str, connection: BlockingConnection, qname: str
) -> None:
    """A raising handler gets no reply sent and its request is dropped, not redelivered."""

    def handler(body: bytes, props: BasicProperties) -> bytes:
        if body == b"boom":
            raise ValueError("boom")
        return body

    server = ServerThread(broker_url, qname, handler)
    try:
        rpc = RpcClient(connection)
        with pytest.raises(RpcTimeout):
            rpc.call(qname, b"boom", timeout=0.3)
        assert rpc.call(qname, b"fine") == b"fine"  # the server survived
        probe = connection.channel()
        assert probe.queue_declare(qname, passive=True).method.message_count == 0
    finally:
        server.stop()


def test_request_properties_reach_the_handler(broker_url: str, connection: BlockingConnection,
                                              qname: str) -> None:
    """Caller properties travel with the request; correlation_id and reply_to are the client's."""
    seen: list[BasicProperties] = []

    def handler(body: bytes, props: BasicProperties) -> bytes:
        seen.append(props)
        return b"ok"

    server = ServerThread(broker_url, qname, handler)
    try:
        rpc = RpcClient(connection)
        rpc.call(qname, b"x", properties=BasicProperties(content_type="text/plain"))
        (props,) = seen
        assert props.content_type == "text/plain"
        # With direct reply-to the broker rewrites reply_to to a per-channel name.
        assert props.reply_to is not None and props.reply_to.startswith(rpc.reply_to)
        assert props.correlation_id
    finally:
        server.stop()


def test_correlation_ids_are_unique_within_and_across_clients() -> None:
    """Every id differs from the others of its client and from another client's ids."""
    first, second = correlation_ids(), correlation_ids()
    ids = [next(first) for _ in range(10_000)] + [next(second) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    # Short strings: correlation_id is an AMQP shortstr (at most 255 bytes).
    assert max(len(i) for i in ids) < 40
