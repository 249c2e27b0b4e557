"""The Twisted client over real TCP (port 0) against an in-process broker, under pytest-twisted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ServerEndpoint

from amqplike.client.exceptions import (
    AMQPConnectionError,
    ChannelClosedByBroker,
    ProbableAuthenticationError,
    UnroutableError,
)
from amqplike.client.parameters import ConnectionParameters, PlainCredentials
from amqplike.client.twisted import TwistedConnection, connect
from amqplike.client.twisted_rpc import TwistedRpcClient, TwistedRpcServer
from amqplike.core import Broker
from amqplike.properties import BasicProperties
from amqplike.server import BrokerFactory


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@asynccontextmanager
async def broker_and_client() -> AsyncIterator[tuple[str, TwistedConnection]]:
    """Listen on a free loopback port, connect a client; close both afterwards."""
    reactor = _reactor()
    factory = BrokerFactory(Broker(), reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    url = f"amqplike://guest:guest@127.0.0.1:{port.getHost().port}/%2F"
    conn = await connect(url, reactor)
    try:
        yield url, conn
    finally:
        await conn.close()
        for protocol in list(factory.connections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_declare_bind_publish_get() -> None:
    """A direct binding routes a publish; basic_get returns it with its properties."""
    async with broker_and_client() as (_url, conn):
        ch = await conn.channel()
        await ch.exchange_declare("ex", "direct")
        frame = await ch.queue_declare("jobs")
        assert frame.method.queue == "jobs"
        await ch.queue_bind("jobs", "ex", "k")
        await ch.basic_publish("ex", "k", b"hello", BasicProperties(message_id="1"))
        message = None
        while message is None:  # the publish and the get travel in order
            message = await ch.basic_get("jobs", auto_ack=True)
        assert (message.body, message.properties.message_id, message.method.exchange) == (
            b"hello", "1", "ex"
        )


@pytest_twisted.ensureDeferred
async def test_consume_nack_requeue_and_ack() -> None:
    """A nacked delivery comes back redelivered; acking it empties the queue."""
    async with broker_and_client() as (_url, conn):
        ch = await conn.channel()
        await ch.queue_declare("jobs")
        await ch.basic_qos(prefetch_count=1)
        queue, _tag = await ch.basic_consume("jobs")
        ch.basic_publish("", "jobs", b"work")
        _c, first, _p, _b = await queue.get()
        assert not first.redelivered
        ch.basic_nack(first.delivery_tag, requeue=True)
        _c, second, _p, body = await queue.get()
        assert second.redelivered and body == b"work"
        ch.basic_ack(second.delivery_tag)
        frame = await ch.queue_declare("jobs", passive=True)
        assert frame.method.message_count == 0


@pytest_twisted.ensureDeferred
async def test_confirms_and_unroutable_error() -> None:
    """Confirmed publishes fire; a mandatory publish to nowhere fails with UnroutableError."""
    async with broker_and_client() as (_url, conn):
        ch = await conn.channel()
        await ch.confirm_delivery()
        await ch.queue_declare("jobs")
        await gatherResults([ch.basic_publish("", "jobs", b"%d" % i) for i in range(200)])
        with pytest.raises(UnroutableError):
            await ch.basic_publish("", "nowhere", b"x", mandatory=True)
        frame = await ch.queue_declare("jobs", passive=True)
        assert frame.method.message_count == 200


@pytest_twisted.ensureDeferred
async def test_channel_closed_by_broker() -> None:
    """A missing queue closes the channel with ChannelClosedByBroker(404); the connection lives."""
    async with broker_and_client() as (_url, conn):
        ch = await conn.channel()
        with pytest.raises(ChannelClosedByBroker) as info:
            await ch.queue_declare("missing", passive=True)
        assert info.value.reply_code == 404
        assert conn.is_open and (await conn.channel()).is_open


@pytest_twisted.ensureDeferred
async def test_rpc_hundred_concurrent_calls() -> None:
    """100 RPC calls in flight over TCP each get their own reply (direct reply-to or fallback)."""
    async with broker_and_client() as (url, conn):
        server_conn = await connect(url, _reactor())
        try:
            server_ch = await server_conn.channel()
            await server_ch.queue_declare("rpc")
            server = TwistedRpcServer(server_ch, "rpc", lambda body, props: body.upper(),
                                      prefetch_count=50)
            await server.start()
            client = TwistedRpcClient(await conn.channel())
            bodies = [b"req-%03d" % i for i in range(100)]
            replies = await gatherResults([client.call("rpc", b, timeout=10) for b in bodies])
            assert replies == [b.upper() for b in bodies]
            await client.close()
            await server.stop()
        finally:
            await server_conn.close()


@pytest_twisted.ensureDeferred
async def test_bad_password_fails_connect() -> None:
    """connect() fails with ProbableAuthenticationError for refused credentials."""
    async with broker_and_client() as (url, _conn):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        params = ConnectionParameters(
            host="127.0.0.1", port=port, credentials=PlainCredentials("guest", "nope")
        )
        with pytest.raises(ProbableAuthenticationError):
            await connect(params, _reactor())


@pytest_twisted.ensureDeferred
async def test_connection_refused() -> None:
    """Nothing listening: connect() fails with AMQPConnectionError."""
    reactor = _reactor()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        BrokerFactory(Broker(), reactor)
    )
    number = port.getHost().port
    await port.stopListening()
    d: Deferred[TwistedConnection] = connect(
        ConnectionParameters(host="127.0.0.1", port=number), reactor
    )
    with pytest.raises(AMQPConnectionError):
        await d
