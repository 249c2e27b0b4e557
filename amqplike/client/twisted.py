"""A Twisted client shaped like pika's Twisted adapter: every call returns a Deferred.

::

    conn = await connect("amqplike://guest:guest@127.0.0.1:5680/%2F")
    ch = await conn.channel()
    await ch.queue_declare("jobs")
    await ch.basic_publish("", "jobs", b"hi")
    queue, tag = await ch.basic_consume("jobs")
    channel, method, properties, body = await queue.get()
    ch.basic_ack(method.delivery_tag)
    await conn.close()

:class:`TwistedConnection` is a thin ``Protocol`` around the sans-IO
:class:`~amqplike.client._engine.ClientEngine`: ``dataReceived`` feeds it
and acts on its events, and nothing escapes ``dataReceived``.  Output is
coalesced: everything produced while handling one ``dataReceived`` is
written once at its end, and what API calls produce in between is written
once per reactor turn (a single ``callLater(0)``).  TCP_NODELAY is set.

Errors reach the Deferreds that wait: a broker ``channel.close`` fails the
channel's pending calls, its consumers' queues and its unconfirmed
publishes with ``ChannelClosedByBroker``; a ``connection.close`` fails
everything with ``ConnectionClosedByBroker``; a lost socket with
``StreamLostError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from twisted.internet.defer import Deferred, DeferredQueue, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from amqplike.client._engine import (
    CLOSING,
    Blocked,
    ChannelClosedEvent,
    ClientEngine,
    Confirmed,
    ConnectionClosedEvent,
    ConnectionOpened,
    ConsumerCancelledByBroker,
    Delivery,
    Event,
    MethodFrame,
    Reply,
    Returned,
    Unblocked,
)
from amqplike.client.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelWrongStateError,
    ConnectionWrongStateError,
    ConsumerCancelled,
    DuplicateConsumerTag,
    NackError,
    UnroutableError,
)
from amqplike.client.parameters import ConnectionParameters, as_parameters
from amqplike.properties import BasicProperties
from amqplike.wire import methods as m

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTCP

    class _Reactor(IReactorTCP, IReactorTime): ...


class ReceivedMessage(NamedTuple):
    """A message handed to a Twisted consumer: pika's ``ReceivedMessage``."""

    channel: TwistedChannel
    method: Any
    properties: BasicProperties
    body: bytes


class ClosableDeferredQueue(DeferredQueue[Any]):
    """A ``DeferredQueue`` that can be closed with a reason (pika's, same name).

    After :meth:`close`, waiting and future :meth:`get` calls fail with the
    reason (``ConsumerCancelled``, ``ChannelClosedByBroker`` ...).
    """

    def __init__(self) -> None:
        super().__init__()
        #: Why the queue was closed, or ``None`` while open.
        self.closed: Exception | None = None

    def put(self, obj: Any) -> None:
        """Add an item; items put after :meth:`close` are dropped."""
        if self.closed is None:
            super().put(obj)

    def get(self) -> Deferred[Any]:
        """Return a Deferred firing with the next item, or failing once the queue is closed."""
        if self.closed is not None and not self.pending:
            return fail(self.closed)
        return super().get()

    def close(self, reason: Exception) -> None:
        """Fail every waiting ``get`` with ``reason``; items already queued can still be read."""
        if self.closed is not None:
            return
        self.closed = reason
        while self.waiting:
            self.waiting.pop(0).errback(reason)


_log = Logger()


def _call_user(callback: Callable[..., Any], *args: Any) -> None:
    """Run a user callback; its exception is logged, never fatal to the connection."""
    try:
        callback(*args)
    except Exception:
        _log.failure("Error in callback {callback!r}", callback=callback)


def _default_reactor() -> _Reactor:
    from twisted.internet import reactor  # noqa: TID251 - lazily, only when none was given

    return cast("_Reactor", reactor)


def connect(
    parameters: ConnectionParameters | str | None = None,
    reactor: Any = None,
) -> Deferred[TwistedConnection]:
    """Connect over TCP and perform the handshake.

    Fires with the open :class:`TwistedConnection`; fails with
    ``AMQPConnectionError`` (``ProbableAuthenticationError`` ...) when the
    connection or the handshake fails.  ``reactor`` defaults to the global one.
    """
    params = as_parameters(parameters)
    the_reactor: _Reactor = reactor if reactor is not None else _default_reactor()

    async def _connect() -> TwistedConnection:
        endpoint = HostnameEndpoint(
            the_reactor, params.host, params.port, timeout=params.socket_timeout
        )
        protocol = TwistedConnection(params, the_reactor)
        try:
            await connectProtocol(endpoint, protocol)
        except Exception as e:
            raise AMQPConnectionError(
                f"could not connect to {params.host}:{params.port}: {e}"
            ) from e
        return await protocol.ready

    return Deferred.fromCoroutine(_connect())


class TwistedConnection(Protocol):
    """One client connection; build it with :func:`connect`.

    ``ready`` fires with the connection once the handshake finished (or
    fails with the reason it did not); ``closed`` fires with the error that
    ended the connection (``ConnectionClosedByClient`` for :meth:`close`).
    """

    log = Logger()

    def __init__(self, parameters: ConnectionParameters | str | None, clock: IReactorTime) -> None:
        self.parameters = as_parameters(parameters)
        self._clock = clock
        self._engine = ClientEngine(self.parameters)
        #: Fires with this connection when it is open.
        self.ready: Deferred[TwistedConnection] = Deferred()
        #: Fires with the connection's final error once it is finished.
        self.closed: Deferred[AMQPConnectionError] = Deferred()
        self._channels: dict[int, TwistedChannel] = {}
        self._opening: dict[int, tuple[TwistedChannel, Deferred[TwistedChannel]]] = {}
        self._replies: dict[int, Deferred[Reply]] = {}
        self._batch = 0
        self._flush_call: IDelayedCall | None = None
        self._heartbeat_call: IDelayedCall | None = None
        self._handshake_call: IDelayedCall | None = None
        self._close_waiters: list[Deferred[None]] = []
        self._lost = False
        self._error: AMQPConnectionError | None = None
        self._blocked_callbacks: list[Callable[[TwistedConnection, MethodFrame], Any]] = []
        self._unblocked_callbacks: list[Callable[[TwistedConnection, MethodFrame], Any]] = []

    # --- state ---

    @property
    def is_open(self) -> bool:
        """True while the connection is usable."""
        return self._engine.is_open

    @property
    def is_closed(self) -> bool:
        """True once the connection is finished."""
        return self._engine.is_closed

    @property
    def server_properties(self) -> Mapping[str, Any]:
        """The broker's ``server_properties``."""
        return self._engine.server_properties

    # --- Protocol ---

    def connectionMade(self) -> None:
        """Start the handshake (TCP_NODELAY on, handshake timer armed)."""
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        self._engine.start(self._clock.seconds())
        self._handshake_call = self._clock.callLater(
            self.parameters.socket_timeout, self._handshake_timed_out
        )
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        """Feed the engine and act on its events; never raises."""
        self._batch += 1
        try:
            self._handle(self._engine.receive_data(data, self._clock.seconds()))
        except Exception:
            self.log.failure("Unexpected error in the amqplike client")
            self._abort(AMQPConnectionError("internal client error"))
        finally:
            self._batch -= 1
            if not self._batch:
                self._flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail whatever still waits; idempotent, never raises."""
        if self._lost:
            return
        self._lost = True
        try:
            self._handle(self._engine.connection_lost(reason.getErrorMessage()))
        except Exception:
            self.log.failure("Unexpected error in the amqplike client")
        self._cancel_timers()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # --- public API ---

    def channel(self, channel_number: int | None = None) -> Deferred[TwistedChannel]:
        """Open a channel; fires with the :class:`TwistedChannel` once the broker agreed."""
        try:
            number, token = self._engine.open_channel(channel_number)
        except AMQPError as e:
            return fail(e)
        channel = TwistedChannel(self, number)
        self._channels[number] = channel
        opened: Deferred[TwistedChannel] = Deferred()
        reply = self._expect(token)
        reply.addCallbacks(lambda _: opened.callback(channel), opened.errback)
        self._schedule_flush()
        return opened

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> Deferred[None]:
        """Close the connection; fires once the socket is closed (at once if it already is)."""
        if self._lost:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        if self._engine.is_open:
            self._engine.close(reply_code, reply_text)
            self._schedule_flush()
        elif not self._engine.is_closed and self._engine.state != CLOSING:
            # Still in the handshake: give up on it.
            self._abort(AMQPConnectionError("closed by the client during the handshake"))
        return waiter

    def add_on_connection_blocked_callback(
        self, callback: Callable[[TwistedConnection, MethodFrame], Any]
    ) -> None:
        """Call ``callback(connection, method_frame)`` on ``connection.blocked``."""
        self._blocked_callbacks.append(callback)

    def add_on_connection_unblocked_callback(
        self, callback: Callable[[TwistedConnection, MethodFrame], Any]
    ) -> None:
        """Call ``callback(connection, method_frame)`` on ``connection.unblocked``."""
        self._unblocked_callbacks.append(callback)

    # --- plumbing ---

    def _expect(self, token: int) -> Deferred[Reply]:
        d: Deferred[Reply] = Deferred()
        self._replies[token] = d
        return d

    def _schedule_flush(self) -> None:
        if self._batch or self._flush_call is not None:
            return
        self._flush_call = self._clock.callLater(0, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_call = None
        try:
            self._flush()
        except Exception:
            self.log.failure("Unexpected error in the amqplike client")

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
            self._flush_call = None
        data = self._engine.data_to_send(self._clock.seconds())
        if data and self.transport is not None and not self._lost:
            self.transport.write(data)

    def _abort(self, error: AMQPConnectionError) -> None:
        self._handle(self._engine.abort(error))
        self._flush()
        if self.transport is not None:
            self.transport.loseConnection()

    def _handshake_timed_out(self) -> None:
        self._handshake_call = None
        try:
            self._abort(AMQPConnectionError("the handshake timed out"))
        except Exception:
            self.log.failure("Unexpected error in the amqplike client")

    def _heartbeat(self) -> None:
        self._heartbeat_call = None
        try:
            self._handle(self._engine.tick(self._clock.seconds()))
            self._flush()
            self._schedule_heartbeat()
        except Exception:
            self.log.failure("Unexpected error in the amqplike client")

    def _schedule_heartbeat(self) -> None:
        deadline = self._engine.next_deadline()
        if deadline is not None and self._heartbeat_call is None:
            delay = max(0.0, deadline - self._clock.seconds())
            self._heartbeat_call = self._clock.callLater(delay, self._heartbeat)

    def _cancel_timers(self) -> None:
        for call in (self._flush_call, self._heartbeat_call, self._handshake_call):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._heartbeat_call = self._handshake_call = None

    def _handle(self, events: list[Event]) -> None:
        channels = self._channels
        for event in events:
            kind = type(event)
            if kind is Delivery:
                assert isinstance(event, Delivery)
                channel = channels.get(event.channel)
                if channel is not None:
                    channel._on_delivery(event)
            elif kind is Reply:
                assert isinstance(event, Reply)
                waiter = self._replies.pop(event.token, None)
                if waiter is not None:
                    waiter.callback(event)
            elif kind is Confirmed:
                assert isinstance(event, Confirmed)
                channel = channels.get(event.channel)
                if channel is not None:
                    channel._on_confirmed(event)
            elif kind is Returned:
                assert isinstance(event, Returned)
                channel = channels.get(event.channel)
                if channel is not None:
                    channel._on_returned(event)
            elif kind is ConsumerCancelledByBroker:
                assert isinstance(event, ConsumerCancelledByBroker)
                channel = channels.get(event.channel)
                if channel is not None:
                    channel._on_broker_cancel(event)
            elif kind is ChannelClosedEvent:
                assert isinstance(event, ChannelClosedEvent)
                # Mark the channel closed before any waiter's errback runs user code.
                channel = channels.pop(event.channel, None)
                waiters = [self._replies.pop(t, None) for t in event.pending]
                if channel is not None:
                    channel._on_closed(event.error)
                for waiter in waiters:
                    if waiter is not None:
                        waiter.errback(event.error)
            elif kind is ConnectionOpened:
                if self._handshake_call is not None and self._handshake_call.active():
                    self._handshake_call.cancel()
                self._handshake_call = None
                self._schedule_heartbeat()
                self.ready.callback(self)
            elif kind is ConnectionClosedEvent:
                assert isinstance(event, ConnectionClosedEvent)
                self._on_connection_closed(event.error)
            elif kind is Blocked or kind is Unblocked:
                assert isinstance(event, Blocked | Unblocked)
                frame = MethodFrame(0, event.method)
                callbacks = self._blocked_callbacks if kind is Blocked else self._unblocked_callbacks
                for callback in callbacks:
                    _call_user(callback, self, frame)

    def _on_connection_closed(self, error: AMQPConnectionError) -> None:
        self._error = error
        self._cancel_timers()
        waiters = list(self._replies.values())
        self._replies.clear()
        for waiter in waiters:
            waiter.errback(error)
        self._flush()
        if not self.ready.called:
            self.ready.errback(error)
        self.closed.callback(error)
        if self.transport is not None and not self._lost:
            self.transport.loseConnection()


class TwistedChannel:
    """A channel whose methods return Deferreds (pika's ``TwistedChannel``).

    Made by :meth:`TwistedConnection.channel`.  ``basic_ack``,
    ``basic_nack`` and ``basic_reject`` return nothing; every other method
    returns a Deferred that fails with the channel's or connection's error.
    """

    log = Logger()

    def __init__(self, connection: TwistedConnection, channel_number: int) -> None:
        self._connection = connection
        self._engine = connection._engine
        self._number = channel_number
        self._closed_error: AMQPError | None = None
        self._consumers: dict[str, ClosableDeferredQueue] = {}
        self._auto_ack: dict[str, bool] = {}
        #: Library-internal consumers (RPC) called with each message as it is read.
        self._inline: dict[str, Callable[[ReceivedMessage], Any]] = {}
        #: Consumers being cancelled, with their ``auto_ack``: late deliveries go back.
        self._cancelling: dict[str, bool] = {}
        self._confirming = False
        self._deliveries: dict[int, Deferred[Any]] = {}
        self._return_callbacks: list[Callable[[ReceivedMessage], Any]] = []
        self._close_waiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<TwistedChannel number={self._number} open={self.is_open}>"

    # --- state ---

    @property
    def channel_number(self) -> int:
        """The channel's number."""
        return self._number

    @property
    def connection(self) -> TwistedConnection:
        """The channel's connection."""
        return self._connection

    @property
    def is_open(self) -> bool:
        """True until the channel or its connection closes."""
        return self._closed_error is None and self._engine.channel_is_open(self._number)

    @property
    def is_closed(self) -> bool:
        """True once the channel is closed."""
        return self._closed_error is not None

    @property
    def consumer_tags(self) -> list[str]:
        """Tags of the channel's active consumers."""
        return list(self._consumers)

    # --- engine events ---

    def _on_delivery(self, event: Delivery) -> None:
        tag = event.method.consumer_tag
        queue = self._consumers.get(tag)
        if queue is not None:
            queue.put(ReceivedMessage(self, event.method, event.properties, event.body))
        elif tag in self._inline:
            self._inline[tag](ReceivedMessage(self, event.method, event.properties, event.body))
        elif self._cancelling.get(event.method.consumer_tag) is False:
            # Sent before the broker saw our cancel: give it back to the queue.
            self._engine.send(self._number, m.BasicReject(event.method.delivery_tag, True))
            self._connection._schedule_flush()

    def _on_returned(self, event: Returned) -> None:
        message = ReceivedMessage(self, event.method, event.properties, event.body)
        for callback in self._return_callbacks:
            _call_user(callback, message)

    def _on_confirmed(self, event: Confirmed) -> None:
        for tag in event.delivery_tags:
            d = self._deliveries.pop(tag, None)
            if d is None:
                continue
            returned = event.returned if tag == event.delivery_tag else None
            messages = (
                [ReceivedMessage(self, returned.method, returned.properties, returned.body)]
                if returned is not None
                else []
            )
            if not event.ack:
                d.errback(NackError(messages))
            elif messages:
                d.errback(UnroutableError(messages))
            else:
                d.callback(event.method)

    def _on_broker_cancel(self, event: ConsumerCancelledByBroker) -> None:
        queue = self._consumers.pop(event.method.consumer_tag, None)
        self._inline.pop(event.method.consumer_tag, None)
        self._auto_ack.pop(event.method.consumer_tag, None)
        if queue is not None:
            queue.close(ConsumerCancelled(MethodFrame(self._number, event.method)))

    def _on_closed(self, error: AMQPError) -> None:
        self._closed_error = error
        self._inline.clear()
        consumers, self._consumers = self._consumers, {}
        for queue in consumers.values():
            queue.close(error)
        deliveries, self._deliveries = self._deliveries, {}
        for d in deliveries.values():
            d.errback(error)
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # --- helpers ---

    def _state_error(self) -> AMQPError:
        # As pika's TwistedChannel: calls on a closed channel fail with why it closed.
        if self._closed_error is not None:
            return self._closed_error
        if not self._engine.is_open:
            return ConnectionWrongStateError(f"the connection is {self._engine.state}")
        return ChannelWrongStateError(f"channel {self._number} is closing")

    def _call(self, method: m.Method) -> Deferred[Reply]:
        if not self.is_open:
            return fail(self._state_error())
        d = self._connection._expect(self._engine.call(self._number, method))
        self._connection._schedule_flush()
        return d

    def _frame(self, method: m.Method) -> Deferred[MethodFrame]:
        number = self._number
        return self._call(method).addCallback(lambda reply: MethodFrame(number, reply.method))

    def _send(self, method: m.Method) -> None:
        if not self.is_open:
            raise self._state_error()
        self._engine.send(self._number, method)
        self._connection._schedule_flush()

    # --- channel ---

    def close(self, reply_code: int = 0, reply_text: str = "Normal shutdown") -> Deferred[None]:
        """Close the channel; fires once the broker confirmed (``close-ok``)."""
        if not self.is_open:
            return fail(self._state_error())
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        self._engine.close_channel(self._number, reply_code, reply_text)
        self._connection._schedule_flush()
        return waiter

    def flow(self, active: bool) -> Deferred[bool]:
        """Pause (False) or resume (True) deliveries; fires with the broker's answer."""

        def to_active(reply: Reply) -> bool:
            assert isinstance(reply.method, m.ChannelFlowOk)
            return reply.method.active

        return self._call(m.ChannelFlow(active)).addCallback(to_active)

    def add_on_return_callback(self, callback: Callable[[ReceivedMessage], Any]) -> None:
        """Call ``callback(message)`` (a :class:`ReceivedMessage`) for each returned message."""
        self._return_callbacks.append(callback)

    # --- exchanges and queues ---

    def exchange_declare(
        self,
        exchange: str,
        exchange_type: Any = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[MethodFrame]:
        """Declare an exchange; fires with the ``declare-ok`` frame."""
        kind = exchange_type.value if hasattr(exchange_type, "value") else exchange_type
        return self._frame(
            m.ExchangeDeclare(
                exchange, str(kind), passive, durable, auto_delete, internal, False,
                dict(arguments or {}),
            )
        )

    def exchange_delete(
        self, exchange: str | None = None, if_unused: bool = False
    ) -> Deferred[MethodFrame]:
        """Delete an exchange; fires with the ``delete-ok`` frame."""
        return self._frame(m.ExchangeDelete(exchange or "", if_unused, False))

    def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[MethodFrame]:
        """Bind exchange ``destination`` to ``source``."""
        return self._frame(
            m.ExchangeBind(destination, source, routing_key, False, dict(arguments or {}))
        )

    def exchange_unbind(
        self,
        destination: str | None = None,
        source: str | None = None,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[MethodFrame]:
        """Remove an exchange-to-exchange binding."""
        return self._frame(
            m.ExchangeUnbind(
                destination or "", source or "", routing_key, False, dict(arguments or {})
            )
        )

    def queue_declare(
        self,
        queue: str,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[MethodFrame]:
        """Declare a queue; fires with the frame (``.method.queue``, ``.message_count`` ...)."""
        return self._frame(
            m.QueueDeclare(
                queue, passive, durable, exclusive, auto_delete, False, dict(arguments or {})
            )
        )

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False
    ) -> Deferred[MethodFrame]:
        """Delete a queue; the frame's ``method.message_count`` is how many it held."""
        return self._frame(m.QueueDelete(queue, if_unused, if_empty, False))

    def queue_purge(self, queue: str) -> Deferred[MethodFrame]:
        """Drop a queue's ready messages; ``method.message_count`` says how many."""
        return self._frame(m.QueuePurge(queue, False))

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[MethodFrame]:
        """Bind a queue (``routing_key`` defaults to the queue name)."""
        return self._frame(
            m.QueueBind(
                queue, exchange, queue if routing_key is None else routing_key, False,
                dict(arguments or {}),
            )
        )

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[MethodFrame]:
        """Remove a queue binding (``routing_key`` defaults to the queue name)."""
        return self._frame(
            m.QueueUnbind(
                queue, exchange or "", queue if routing_key is None else routing_key,
                dict(arguments or {}),
            )
        )

    # --- basic ---

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False
    ) -> Deferred[MethodFrame]:
        """Limit unacknowledged deliveries per consumer (per channel with ``global_qos``)."""
        return self._frame(m.BasicQos(prefetch_size, prefetch_count, global_qos))

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        properties: BasicProperties | None = None,
        mandatory: bool = False,
    ) -> Deferred[Any]:
        """Publish a message.

        Outside confirm mode the Deferred fires (with ``None``) at once.  In
        confirm mode it fires with the ``basic.ack`` once the broker
        confirmed, or fails with ``UnroutableError`` (a mandatory message
        was returned) or ``NackError``.
        """
        if not self.is_open:
            return fail(self._state_error())
        data = body.encode() if isinstance(body, str) else body
        tag = self._engine.publish(self._number, exchange, routing_key, data, properties, mandatory)
        self._connection._schedule_flush()
        if not self._confirming:
            return succeed(None)
        d: Deferred[Any] = Deferred()
        self._deliveries[tag] = d
        return d

    def basic_get(self, queue: str, auto_ack: bool = False) -> Deferred[ReceivedMessage | None]:
        """Fetch one message: fires with a :class:`ReceivedMessage`, or ``None`` if the queue is empty."""

        def to_message(reply: Reply) -> ReceivedMessage | None:
            if isinstance(reply.method, m.BasicGetOk):
                return ReceivedMessage(self, reply.method, reply.properties, reply.body)
            return None

        return self._call(m.BasicGet(queue, auto_ack)).addCallback(to_message)

    def basic_consume(
        self,
        queue: str,
        auto_ack: bool = False,
        exclusive: bool = False,
        consumer_tag: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Deferred[tuple[ClosableDeferredQueue, str]]:
        """Start a consumer; fires with ``(queue_object, consumer_tag)``.

        ``queue_object.get()`` fires with the next ``(channel, method,
        properties, body)``; it fails with ``ConsumerCancelled`` after a
        cancel and with the channel's error when the channel closes.
        """
        if not self.is_open:
            return fail(self._state_error())
        tag = consumer_tag or f"ctag{self._number}.{uuid.uuid4().hex}"
        if tag in self._consumers:
            return fail(DuplicateConsumerTag(tag))
        queue_object = ClosableDeferredQueue()
        self._consumers[tag] = queue_object
        self._auto_ack[tag] = auto_ack

        def started(_reply: Reply) -> tuple[ClosableDeferredQueue, str]:
            return queue_object, tag

        def failed(failure: Failure) -> Failure:
            if self._consumers.get(tag) is queue_object:
                del self._consumers[tag]
                self._auto_ack.pop(tag, None)
            return failure

        return self._call(
            m.BasicConsume(queue, tag, False, auto_ack, exclusive, False, dict(arguments or {}))
        ).addCallbacks(started, failed)

    def _consume_inline(
        self, queue: str, callback: Callable[[ReceivedMessage], Any], auto_ack: bool
    ) -> Deferred[str]:
        """Start a library-internal consumer calling ``callback(message)`` as messages arrive."""
        if not self.is_open:
            return fail(self._state_error())
        tag = f"ctag{self._number}.{uuid.uuid4().hex}"
        self._inline[tag] = callback
        self._auto_ack[tag] = auto_ack

        def failed(failure: Failure) -> Failure:
            self._inline.pop(tag, None)
            self._auto_ack.pop(tag, None)
            return failure

        return self._call(
            m.BasicConsume(queue, tag, False, auto_ack, False, False, {})
        ).addCallbacks(lambda _: tag, failed)

    def basic_cancel(self, consumer_tag: str) -> Deferred[MethodFrame]:
        """Cancel a consumer; its queue object is closed with ``ConsumerCancelled``."""
        queue = self._consumers.pop(consumer_tag, None)
        inline = self._inline.pop(consumer_tag, None)
        if queue is None and inline is None:
            return succeed(MethodFrame(self._number, m.BasicCancelOk(consumer_tag)))
        if queue is not None:
            queue.close(ConsumerCancelled(consumer_tag))
        self._cancelling[consumer_tag] = self._auto_ack.pop(consumer_tag, False)

        def cancelled(result: Any) -> Any:
            self._cancelling.pop(consumer_tag, None)
            return result

        return self._frame(m.BasicCancel(consumer_tag, False)).addBoth(cancelled)

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        """Acknowledge a delivery (all up to it with ``multiple``)."""
        self._send(m.BasicAck(delivery_tag, multiple))

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        """Reject one or many deliveries, requeueing them unless ``requeue=False``."""
        self._send(m.BasicNack(delivery_tag, multiple, requeue))

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        """Reject one delivery, requeueing it unless ``requeue=False``."""
        self._send(m.BasicReject(delivery_tag, requeue))

    def basic_recover(self, requeue: bool = False) -> Deferred[MethodFrame]:
        """Redeliver the channel's unacknowledged deliveries."""
        return self._frame(m.BasicRecover(requeue))

    def confirm_delivery(self) -> Deferred[MethodFrame | None]:
        """Enter publisher-confirm mode: ``basic_publish`` Deferreds then wait for confirms."""
        if self._confirming:
            return succeed(None)
        d = self._frame(m.ConfirmSelect(False))
        # Publishes made from now on are numbered by the broker (the engine counts them).
        self._confirming = True
        return cast("Deferred[MethodFrame | None]", d)


__all__ = [
    "ClosableDeferredQueue",
    "ReceivedMessage",
    "TwistedChannel",
    "TwistedConnection",
    "connect",
]
