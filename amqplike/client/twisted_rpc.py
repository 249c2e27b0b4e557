"""Request-reply (RPC) over the Twisted client, with RabbitMQ's direct reply-to.

The same protocol as :mod:`amqplike.client.rpc` (read its docstring for
``reply_queue`` and the server's error policy), with Deferreds:
:meth:`TwistedRpcClient.call` returns a ``Deferred[bytes]`` and any number
of calls may be in flight on one client, matched by ``correlation_id``.
A :class:`TwistedRpcServer` handler may return bytes or a Deferred of
bytes; requests are handled concurrently, up to the channel's prefetch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from amqplike.client.exceptions import ChannelClosedByBroker, RpcTimeout
from amqplike.client.rpc import (
    DEFAULT_TIMEOUT_SECONDS,
    DIRECT_REPLY_TO,
    ReplyQueue,
    correlation_ids,
)
from amqplike.client.twisted import ReceivedMessage, TwistedChannel, TwistedConnection
from amqplike.properties import BasicProperties

Handler = Callable[[bytes, BasicProperties], "bytes | str | Deferred[bytes]"]


async def broker_has_direct_reply_to(connection: TwistedConnection) -> bool:
    """Probe on a scratch channel whether the broker serves ``amq.rabbitmq.reply-to``."""
    probe = await connection.channel()
    try:
        tag = await probe._consume_inline(DIRECT_REPLY_TO, lambda _: None, True)
    except ChannelClosedByBroker:
        return False
    await probe.basic_cancel(tag)
    await probe.close()
    return True


class _Call:
    __slots__ = ("deferred", "timer")

    def __init__(self, deferred: Deferred[bytes], timer: IDelayedCall | None) -> None:
        self.deferred = deferred
        self.timer = timer


class TwistedRpcClient:
    """Calls remote procedures on ``channel``; replies are matched by ``correlation_id``.

    The reply consumer is started by the first :meth:`call` (or by
    :meth:`setup`, which fires once it is ready).
    """

    log = Logger()

    def __init__(self, channel: TwistedChannel, *, reply_queue: ReplyQueue = "auto") -> None:
        if reply_queue not in ("auto", "direct", "exclusive"):
            raise ValueError(
                f"reply_queue must be 'auto', 'direct' or 'exclusive', not {reply_queue!r}"
            )
        self.channel = channel
        #: How replies come back: "direct" or "exclusive" once set up.
        self.reply_queue: str = reply_queue
        #: What requests carry as ``reply_to``, once set up.
        self.reply_to = ""
        self._clock = channel.connection._clock
        self._calls: dict[str, _Call] = {}
        self._ids = correlation_ids()
        self._ready = False
        self._starting = False
        self._setup_waiters: list[Deferred[None]] = []
        self._consumer_tag = ""

    @property
    def in_flight(self) -> int:
        """How many calls await their reply."""
        return len(self._calls)

    def setup(self) -> Deferred[None]:
        """Start consuming replies (once); fires when requests can be sent.

        Each caller gets a Deferred of its own; if setting up fails, every
        waiter fails and a later call tries again.
        """
        if self._ready:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._setup_waiters.append(waiter)
        if not self._starting:
            self._starting = True
            Deferred.fromCoroutine(self._start()).addBoth(self._started)
        return waiter

    def _started(self, result: Failure | None) -> None:
        self._starting = False
        waiters, self._setup_waiters = self._setup_waiters, []
        if isinstance(result, Failure):
            for waiter in waiters:
                waiter.errback(result)
            return
        self._ready = True
        for waiter in waiters:
            waiter.callback(None)

    async def _start(self) -> None:
        mode = self.reply_queue
        if mode == "auto":
            has_direct = await broker_has_direct_reply_to(self.channel.connection)
            mode = "direct" if has_direct else "exclusive"
        if mode == "direct":
            queue = DIRECT_REPLY_TO
        else:
            frame = await self.channel.queue_declare("", exclusive=True, auto_delete=True)
            queue = frame.method.queue
        self._consumer_tag = await self.channel._consume_inline(queue, self._on_reply, True)
        self.reply_queue, self.reply_to = mode, queue

    def _on_reply(self, message: ReceivedMessage) -> None:
        call = self._calls.pop(message.properties.correlation_id or "", None)
        if call is None:
            return  # timed out already, or not ours
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        call.deferred.callback(message.body)

    def _timed_out(self, correlation_id: str, timeout: float) -> None:
        call = self._calls.pop(correlation_id, None)
        if call is not None:
            call.deferred.errback(RpcTimeout(correlation_id, timeout))

    def call(
        self,
        routing_key: str,
        body: bytes | str,
        exchange: str = "",
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        properties: BasicProperties | None = None,
    ) -> Deferred[bytes]:
        """Publish a request; fires with the reply body.

        Fails with :class:`RpcTimeout` after ``timeout`` seconds (``None``:
        never), or with the channel's or connection's error.
        """
        if not self._ready:
            return self.setup().addCallback(
                lambda _: self.call(routing_key, body, exchange, timeout, properties)
            )
        correlation_id = next(self._ids)
        result: Deferred[bytes] = Deferred()
        if properties is None:
            props = BasicProperties(correlation_id=correlation_id, reply_to=self.reply_to)
        else:
            props = evolve(properties, correlation_id=correlation_id, reply_to=self.reply_to)
        timer = (
            self._clock.callLater(timeout, self._timed_out, correlation_id, timeout)
            if timeout is not None
            else None
        )
        self._calls[correlation_id] = _Call(result, timer)
        published = self.channel.basic_publish(exchange, routing_key, body, props)
        published.addErrback(self._publish_failed, correlation_id)
        return result

    def _publish_failed(self, failure: Failure, correlation_id: str) -> None:
        call = self._calls.pop(correlation_id, None)
        if call is not None:
            if call.timer is not None and call.timer.active():
                call.timer.cancel()
            call.deferred.errback(failure)

    def close(self) -> Deferred[Any]:
        """Stop consuming replies and fail the calls in flight with ``RpcTimeout``."""
        calls, self._calls = self._calls, {}
        for correlation_id, call in calls.items():
            if call.timer is not None and call.timer.active():
                call.timer.cancel()
            call.deferred.errback(RpcTimeout(correlation_id, 0.0))
        if self._consumer_tag and self.channel.is_open:
            return self.channel.basic_cancel(self._consumer_tag)
        return succeed(None)


class TwistedRpcServer:
    """Serves requests from ``queue`` with ``handler(body, properties)`` (bytes or a Deferred).

    Call :meth:`start`; replies go to the request's ``reply_to`` with its
    ``correlation_id`` and the request is then acked.  A failing handler is
    logged and its request rejected without requeue.
    """

    log = Logger()

    def __init__(
        self,
        channel: TwistedChannel,
        queue: str,
        handler: Handler,
        *,
        prefetch_count: int | None = None,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.handler = handler
        self.prefetch_count = prefetch_count
        self.consumer_tag = ""

    async def _start(self) -> None:
        if self.prefetch_count is not None:
            await self.channel.basic_qos(prefetch_count=self.prefetch_count)
        self.consumer_tag = await self.channel._consume_inline(self.queue, self._on_request, False)

    def start(self) -> Deferred[None]:
        """Start consuming; fires once the consumer is registered."""
        return Deferred.fromCoroutine(self._start())

    def _on_request(self, message: ReceivedMessage) -> None:
        d = maybeDeferred(self.handler, message.body, message.properties)
        d.addCallbacks(self._reply, self._failed, callbackArgs=(message,), errbackArgs=(message,))
        d.addErrback(self._unexpected)

    def _reply(self, reply: bytes | str, message: ReceivedMessage) -> None:
        channel, properties = message.channel, message.properties
        if not channel.is_open:
            return  # the broker requeues the request when the channel closes
        if properties.reply_to:
            channel.basic_publish(
                "", properties.reply_to, reply,
                BasicProperties(correlation_id=properties.correlation_id),
            ).addErrback(self._unexpected)
        channel.basic_ack(message.method.delivery_tag)

    def _failed(self, failure: Failure, message: ReceivedMessage) -> None:
        self.log.failure(
            "RPC handler failed on {queue} (correlation_id {correlation_id}); request rejected",
            failure,
            queue=self.queue,
            correlation_id=message.properties.correlation_id,
        )
        if message.channel.is_open:
            message.channel.basic_reject(message.method.delivery_tag, requeue=False)

    def _unexpected(self, failure: Failure) -> None:
        self.log.failure("Unexpected error in the RPC server for {queue}", failure, queue=self.queue)

    def stop(self) -> Deferred[Any]:
        """Cancel the consumer; requests being handled still get their replies."""
        if self.consumer_tag and self.channel.is_open:
            return self.channel.basic_cancel(self.consumer_tag)
        return succeed(None)


__all__ = ["TwistedRpcClient", "TwistedRpcServer", "broker_has_direct_reply_to"]
