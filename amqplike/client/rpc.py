"""Request-reply (RPC) over the blocking client, with RabbitMQ's direct reply-to.

:class:`RpcClient` publishes a request with a fresh ``correlation_id``
(:func:`correlation_ids`) and ``reply_to`` set, and matches the reply by that id.
Replies come back through one of:

* ``reply_queue="direct"``: RabbitMQ's direct reply-to: the client consumes
  the pseudo-queue ``amq.rabbitmq.reply-to`` with ``auto_ack=True`` on the
  channel it publishes on, and sends ``reply_to="amq.rabbitmq.reply-to"``;
  no queue is declared.
* ``reply_queue="exclusive"``: an exclusive, server-named reply queue,
  for brokers without direct reply-to.
* ``reply_queue="auto"`` (the default): direct reply-to when a probe on a
  scratch channel shows the broker has it, else an exclusive queue.

Many calls may be in flight at once: :meth:`RpcClient.call_async` returns
a :class:`PendingCall`, :meth:`RpcClient.call_many` sends a batch and
waits for all of it.  Waiting for a reply services only the connection's
I/O; it does not run other consumers' callbacks, so it is safe inside a
callback (e.g. an :class:`RpcServer` handler making a nested call).

:class:`RpcServer` consumes a queue and answers each request with
``handler(body, properties) -> bytes``.  The reply goes to the default
exchange with routing key = the request's ``reply_to`` and the request's
``correlation_id``, then the request is acked.  When the handler raises,
the error is logged and the request is rejected **without requeue** (a
request that crashes its handler would otherwise loop forever; route
rejections to a dead-letter exchange to keep them).  A request without
``reply_to`` is handled and acked, but nothing is sent back.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

from attrs import evolve

from amqplike.client.exceptions import AMQPChannelError, RpcTimeout
from amqplike.client.sync import BlockingChannel, BlockingConnection
from amqplike.properties import BasicProperties
from amqplike.wire import methods as m

#: The pseudo-queue of RabbitMQ's direct reply-to.
DIRECT_REPLY_TO: Final = "amq.rabbitmq.reply-to"
#: Seconds a call waits for its reply unless told otherwise.
DEFAULT_TIMEOUT_SECONDS: Final = 30.0

ReplyQueue = Literal["auto", "direct", "exclusive"]
Handler = Callable[[bytes, BasicProperties], bytes | str]

_log = logging.getLogger(__name__)


def broker_has_direct_reply_to(connection: BlockingConnection) -> bool:
    """Probe on a scratch channel whether the broker serves ``amq.rabbitmq.reply-to``."""
    probe = connection.channel()
    try:
        tag = probe._consume_inline(DIRECT_REPLY_TO, lambda *_: None, True)
    except AMQPChannelError:
        return False
    probe.basic_cancel(tag)
    probe.close()
    return True


class PendingCall:
    """One request in flight; :meth:`result` waits for its reply."""

    def __init__(self, client: RpcClient, correlation_id: str, timeout: float | None) -> None:
        self._client = client
        #: The request's ``correlation_id``.
        self.correlation_id = correlation_id
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._done = False
        self._body = b""
        #: The reply's properties, once it arrived.
        self.properties: BasicProperties | None = None

    def _resolve(self, properties: BasicProperties, body: bytes) -> None:
        self._done = True
        self.properties = properties
        self._body = body

    def done(self) -> bool:
        """True once the reply arrived."""
        return self._done

    def result(self) -> bytes:
        """Wait for the reply and return its body.

        Raises :class:`RpcTimeout` when the call's timeout passes first (a
        late reply is then dropped), or the channel's or connection's error.
        """
        if not self._done:
            self._client._wait(self, self._deadline)
        if not self._done:
            self._client._forget(self.correlation_id)
            raise RpcTimeout(self.correlation_id, self._timeout or 0.0)
        return self._body


def correlation_ids() -> Iterator[str]:
    """Yield correlation ids unique to this client: a random prefix and a counter.

    64 random bits tell clients apart and the counter tells calls apart, so
    the ids are as unique as ``uuid4()`` ones without reading the system's
    random source on every call (a system call on the round trip's path).
    """
    prefix = os.urandom(8).hex()
    for number in itertools.count(1):
        yield f"{prefix}.{number}"


class RpcClient:
    """Calls a remote procedure by publishing a request and waiting for its reply.

    Pass a :class:`BlockingChannel` to publish and consume on it, or a
    :class:`BlockingConnection` to get a channel of the client's own.  The
    reply consumer is set up in the constructor.
    """

    def __init__(
        self,
        channel_or_connection: BlockingChannel | BlockingConnection,
        *,
        reply_queue: ReplyQueue = "auto",
    ) -> None:
        if isinstance(channel_or_connection, BlockingConnection):
            connection = channel_or_connection
            channel = connection.channel()
        else:
            channel = channel_or_connection
            connection = channel.connection
        if reply_queue == "auto":
            reply_queue = "direct" if broker_has_direct_reply_to(connection) else "exclusive"
        if reply_queue == "direct":
            queue = DIRECT_REPLY_TO
        elif reply_queue == "exclusive":
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        else:
            raise ValueError(f"reply_queue must be 'auto', 'direct' or 'exclusive', not {reply_queue!r}")
        self.channel = channel
        #: What requests carry as ``reply_to``.
        self.reply_to: str = queue
        #: ``"direct"`` or ``"exclusive"``: how replies come back.
        self.reply_queue: str = reply_queue
        self._pending: dict[str, PendingCall] = {}
        self._ids = correlation_ids()
        self._consumer_tag = channel._consume_inline(queue, self._on_reply, True)

    def _on_reply(
        self, _channel: BlockingChannel, _method: m.BasicDeliver, properties: BasicProperties,
        body: bytes,
    ) -> None:
        call = self._pending.pop(properties.correlation_id or "", None)
        if call is not None:
            call._resolve(properties, body)

    def _forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    def _wait(self, call: PendingCall, deadline: float | None) -> None:
        channel = self.channel
        channel._check_open()
        channel.connection._pump(
            lambda: call._done or channel._closed_error is not None, deadline
        )
        if not call._done and channel._closed_error is not None:
            channel._raise_closed()

    @property
    def in_flight(self) -> int:
        """How many calls await their reply."""
        return len(self._pending)

    def call_async(
        self,
        routing_key: str,
        body: bytes | str,
        exchange: str = "",
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        properties: BasicProperties | None = None,
    ) -> PendingCall:
        """Publish a request and return its :class:`PendingCall` without waiting.

        ``properties`` may carry anything but ``correlation_id`` and
        ``reply_to``, which the client sets.  ``timeout=None`` waits forever.
        """
        correlation_id = next(self._ids)
        call = PendingCall(self, correlation_id, timeout)
        self._pending[correlation_id] = call
        if properties is None:
            props = BasicProperties(correlation_id=correlation_id, reply_to=self.reply_to)
        else:
            props = evolve(properties, correlation_id=correlation_id, reply_to=self.reply_to)
        try:
            self.channel.basic_publish(exchange, routing_key, body, props)
        except BaseException:
            self._pending.pop(correlation_id, None)
            raise
        return call

    def call(
        self,
        routing_key: str,
        body: bytes | str,
        exchange: str = "",
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        properties: BasicProperties | None = None,
    ) -> bytes:
        """Publish a request and block until its reply; return the reply body.

        Raises :class:`RpcTimeout` after ``timeout`` seconds without a reply.
        """
        return self.call_async(routing_key, body, exchange, timeout, properties).result()

    def call_many(
        self,
        routing_key: str,
        bodies: Iterable[bytes | str],
        exchange: str = "",
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        properties: BasicProperties | None = None,
    ) -> list[bytes]:
        """Send every request at once, then wait for all replies (``timeout`` covers the batch).

        Returns the reply bodies in request order; raises :class:`RpcTimeout`
        for the first call still unanswered at the deadline.
        """
        calls = [self.call_async(routing_key, b, exchange, timeout, properties) for b in bodies]
        return [c.result() for c in calls]

    def close(self) -> None:
        """Stop consuming replies; calls still in flight will time out."""
        if self.channel.is_open:
            self.channel.basic_cancel(self._consumer_tag)


class RpcServer:
    """Serves requests from ``queue`` with ``handler(body, properties) -> bytes``.

    The consumer starts in the constructor; run it with
    ``channel.start_consuming()`` (or any ``process_data_events`` loop) and
    stop it with :meth:`stop`.  See the module docstring for replies and
    errors.  ``prefetch_count`` (when given) is applied with ``basic_qos``.
    """

    def __init__(
        self,
        channel: BlockingChannel,
        queue: str,
        handler: Handler,
        *,
        prefetch_count: int | None = None,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.handler = handler
        if prefetch_count is not None:
            channel.basic_qos(prefetch_count=prefetch_count)
        self.consumer_tag = channel.basic_consume(queue, self._on_request)

    def _on_request(
        self, channel: BlockingChannel, method: m.BasicDeliver, properties: BasicProperties,
        body: bytes,
    ) -> None:
        try:
            reply = self.handler(body, properties)
        except Exception:
            _log.exception(
                "RPC handler failed on queue %r (correlation_id %r); request rejected",
                self.queue, properties.correlation_id,
            )
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        if properties.reply_to:
            channel._publish_unflushed(
                properties.reply_to, reply,
                BasicProperties(correlation_id=properties.correlation_id),
            )
        channel.basic_ack(method.delivery_tag)
        # The reply and the ack in one write (see BlockingChannel._publish_unflushed).
        channel.connection._flush()

    def serve_forever(self) -> None:
        """Run the channel's consumers until :meth:`stop` (``start_consuming``)."""
        self.channel.start_consuming()

    def stop(self) -> None:
        """Cancel the consumer; requests in progress finish, queued ones stay queued."""
        if self.channel.is_open:
            self.channel.basic_cancel(self.consumer_tag)


__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "DIRECT_REPLY_TO",
    "PendingCall",
    "RpcClient",
    "RpcServer",
    "broker_has_direct_reply_to",
    "correlation_ids",
]

