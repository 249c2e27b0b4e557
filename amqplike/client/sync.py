"""A blocking client with pika's ``BlockingConnection``/``BlockingChannel`` API.

It drives the sans-IO :class:`~amqplike.client._engine.ClientEngine` over a
plain socket with ``select``; there is no reactor and no thread behind it.
As with pika, **a connection serves one thread**: every method of a
connection and of its channels must be called from the thread that uses
it, except :meth:`BlockingConnection.add_callback_threadsafe`.

Callbacks (consumers, returns, cancel notifications, timers) run only
inside :meth:`BlockingConnection.process_data_events`,
:meth:`BlockingConnection.sleep`, :meth:`BlockingChannel.start_consuming`
and the :meth:`BlockingChannel.consume` generator, never in the middle of
another blocking call, which keeps user code free of reentrancy surprises
(pika's rule too).  Heartbeats are answered whenever the client waits in
one of its own calls.

Every API call writes what it produced with one ``sendall`` (TCP_NODELAY
is set), so by default a :meth:`BlockingChannel.basic_publish` has left the
process when it returns, as with pika.  Bulk publishers can pipeline:
with ``BlockingConnection(..., publish_buffer_bytes=65536)`` publishes
outside confirm mode are buffered and written once that many bytes
gathered, or when any call waits for the server, processes events, sleeps
or closes (and at interpreter exit).  Nothing is ever left unsent across a
blocking call; but a buffered publish waits there while the program does
something else, which is why this is opt-in (call
``connection.process_data_events(0)`` to push it out).
"""

from __future__ import annotations

import atexit
import errno
import selectors
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Generator, Mapping
from enum import Enum
from types import TracebackType
from typing import Any, Final

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
    MethodFrame,
    Reply,
    Returned,
    Unblocked,
)
from amqplike.client.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelClosedByBroker,
    ChannelWrongStateError,
    ConnectionClosedByClient,
    ConnectionWrongStateError,
    DuplicateConsumerTag,
    NackError,
    ReentrancyError,
    StreamLostError,
    UnroutableError,
)
from amqplike.client.parameters import ConnectionParameters, as_parameters
from amqplike.properties import BasicProperties
from amqplike.wire import methods as m

#: By default every publish is written at once (pika's behaviour); see the module docstring.
DEFAULT_PUBLISH_BUFFER_BYTES: Final = 0
#: Without pipelining, how often a publish also reads what the broker sent.
_POLL_EVERY_PUBLISHES: Final = 64
#: Acks made by callbacks are written together once this much is buffered
#: (or when the dispatch round ends, whichever comes first).
_ACK_BATCH_BYTES: Final = 64 * 1024
#: How much one ``recv`` asks for.  Below glibc's mmap threshold (128 KiB):
#: a larger request makes each ``recv`` an mmap/mremap/munmap of its buffer,
#: which cost 15 us against 1.3 us per small read here.
_RECV_BYTES: Final = 64 * 1024

OnMessageCallback = Callable[["BlockingChannel", m.BasicDeliver, BasicProperties, bytes], Any]
OnReturnCallback = Callable[["BlockingChannel", m.BasicReturn, BasicProperties, bytes], Any]

# Connections with output still buffered at interpreter exit get it flushed.
_LIVE_CONNECTIONS: weakref.WeakSet[BlockingConnection] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for connection in list(_LIVE_CONNECTIONS):
        try:
            connection._flush()
        except Exception:
            pass


def _body_bytes(body: bytes | str) -> bytes:
    # pika accepts str bodies and sends them UTF-8 encoded.
    return body.encode() if isinstance(body, str) else bytes(body)


def _exchange_type(exchange_type: Any) -> str:
    # pika's ExchangeType enum or a plain string.
    return str(exchange_type.value) if isinstance(exchange_type, Enum) else str(exchange_type)


class _Timer:
    __slots__ = ("callback", "deadline", "id")

    def __init__(self, deadline: float, callback: Callable[[], Any], timer_id: int) -> None:
        self.deadline = deadline
        self.callback = callback
        self.id = timer_id


class BlockingConnection:
    """A connection to the broker whose calls block until the broker answers.

    ``parameters`` is a :class:`ConnectionParameters`, a URL
    (``"amqplike://guest:guest@127.0.0.1:5680/%2F"``) or ``None`` for
    ``localhost:5680`` as guest.  The constructor connects and performs the
    handshake; it raises ``AMQPConnectionError`` (``ProbableAuthenticationError``
    for refused credentials, ``ProbableAccessDeniedError`` for a refused
    vhost) when it cannot.  Use one connection per thread.

    ``publish_buffer_bytes`` > 0 turns on publish pipelining (see the module
    docstring): a much higher publish rate, at the price of publishes
    sitting in the buffer until the next call into the connection.
    """

    def __init__(
        self,
        parameters: ConnectionParameters | str | None = None,
        *,
        publish_buffer_bytes: int = DEFAULT_PUBLISH_BUFFER_BYTES,
    ) -> None:
        self.parameters = as_parameters(parameters)
        self.publish_buffer_bytes = publish_buffer_bytes
        self._engine = ClientEngine(self.parameters)
        self._channels: dict[int, BlockingChannel] = {}
        self._replies: dict[int, Reply] = {}
        self._closed_error: AMQPConnectionError | None = None
        self._error_reported = False
        self._ready = False
        self._dispatching = False
        self._connection_events: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._blocked_callbacks: list[Callable[[BlockingConnection, MethodFrame], Any]] = []
        self._unblocked_callbacks: list[Callable[[BlockingConnection, MethodFrame], Any]] = []
        self._timers: dict[int, _Timer] = {}
        self._next_timer_id = 1
        self._threadsafe: deque[Callable[[], Any]] = deque()
        self._threadsafe_lock = threading.Lock()
        #: Channels closed with callbacks still queued; dispatched once more.
        self._orphans: set[BlockingChannel] = set()
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # A selector, not select(): no FD_SETSIZE limit in programs with many files.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            self._sock = self._connect()
            self._selector.register(self._sock, selectors.EVENT_READ)
            self._handshake()
        except BaseException:
            self._close_sockets()
            raise
        _LIVE_CONNECTIONS.add(self)

    def __repr__(self) -> str:
        p = self.parameters
        return f"<BlockingConnection {p.host}:{p.port} {self._engine.state}>"

    def __enter__(self) -> BlockingConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.is_open:
            self.close()

    # --- state ---

    @property
    def is_open(self) -> bool:
        """True while the connection is usable."""
        return self._engine.is_open

    @property
    def is_closed(self) -> bool:
        """True once the connection closed, by either side, or failed."""
        return self._engine.is_closed

    @property
    def server_properties(self) -> Mapping[str, Any]:
        """The broker's ``server_properties`` from ``connection.start``."""
        return self._engine.server_properties

    @property
    def _capabilities(self) -> Mapping[str, Any]:
        caps = self._engine.server_properties.get("capabilities", {})
        return caps if isinstance(caps, Mapping) else {}

    @property
    def basic_nack_supported(self) -> bool:
        """True when the broker supports ``basic.nack``."""
        return bool(self._capabilities.get("basic.nack"))

    @property
    def consumer_cancel_notify_supported(self) -> bool:
        """True when the broker sends ``basic.cancel`` for consumers of deleted queues."""
        return bool(self._capabilities.get("consumer_cancel_notify"))

    @property
    def exchange_exchange_bindings_supported(self) -> bool:
        """True when the broker supports exchange-to-exchange bindings."""
        return bool(self._capabilities.get("exchange_exchange_bindings"))

    @property
    def publisher_confirms_supported(self) -> bool:
        """True when the broker supports publisher confirms."""
        return bool(self._capabilities.get("publisher_confirms"))

    # --- public API ---

    def channel(self, channel_number: int | None = None) -> BlockingChannel:
        """Open a channel and return it once the broker confirmed it."""
        self._check_open()
        number, token = self._engine.open_channel(channel_number)
        channel = BlockingChannel(self, number)
        self._channels[number] = channel
        channel._wait_reply(token)
        return channel

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        """Close the connection (and with it every channel), waiting for ``close-ok``.

        Raises ``ConnectionWrongStateError`` when it is already closed.
        """
        if self.is_closed:
            raise ConnectionWrongStateError("the connection is already closed")
        for channel in list(self._channels.values()):
            channel._cancel_all_consumers_quietly()
        self._engine.close(reply_code, reply_text)
        self._error_reported = True  # a close we asked for is not an error
        deadline = time.monotonic() + self.parameters.socket_timeout
        self._pump(lambda: self._engine.is_closed, deadline)
        if not self._engine.is_closed:
            self._handle(self._engine.abort(ConnectionClosedByClient(reply_code, reply_text)))
        self._close_sockets()

    def process_data_events(self, time_limit: float | None = 0) -> None:
        """Do I/O and run the callbacks that are ready.

        ``time_limit=0`` handles what already arrived and returns;
        ``None`` blocks until at least one callback ran; a number blocks up
        to that many seconds, returning early once callbacks ran.  Raises
        the connection's error (``ConnectionClosedByBroker``,
        ``StreamLostError`` ...) if it failed.
        """
        self._check_open()
        with self._dispatch_guard() as may_dispatch:
            deadline = None if time_limit is None else time.monotonic() + time_limit
            self._pump(lambda: self._ready or self._timer_due(), deadline, timers=True)
            if may_dispatch:
                try:
                    self._dispatch()
                finally:
                    self._flush()  # what the callbacks sent (acks ...) leaves now
        self._raise_if_failed()

    def sleep(self, duration: float) -> None:
        """Block for ``duration`` seconds while doing I/O and running callbacks."""
        deadline = time.monotonic() + duration
        while True:
            self.process_data_events(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    def call_later(self, delay: float, callback: Callable[[], Any]) -> int:
        """Run ``callback()`` after ``delay`` seconds, from ``process_data_events``; returns an id."""
        timer_id = self._next_timer_id
        self._next_timer_id += 1
        self._timers[timer_id] = _Timer(time.monotonic() + delay, callback, timer_id)
        return timer_id

    def remove_timeout(self, timeout_id: int) -> None:
        """Cancel a :meth:`call_later` timer."""
        self._timers.pop(timeout_id, None)

    def add_callback_threadsafe(self, callback: Callable[[], Any]) -> None:
        """Ask the connection's thread to run ``callback()``: the only thread-safe method.

        The callback runs from ``process_data_events`` (or ``start_consuming``)
        in the connection's thread.
        """
        if self.is_closed:
            raise ConnectionWrongStateError("the connection is closed")
        with self._threadsafe_lock:
            self._threadsafe.append(callback)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # the wake-up pipe is full: the reader is already due to wake

    def add_on_connection_blocked_callback(
        self, callback: Callable[[BlockingConnection, MethodFrame], Any]
    ) -> None:
        """Call ``callback(connection, method_frame)`` on ``connection.blocked``."""
        self._blocked_callbacks.append(callback)

    def add_on_connection_unblocked_callback(
        self, callback: Callable[[BlockingConnection, MethodFrame], Any]
    ) -> None:
        """Call ``callback(connection, method_frame)`` on ``connection.unblocked``."""
        self._unblocked_callbacks.append(callback)

    # --- I/O ---

    def _connect(self) -> socket.socket:
        p = self.parameters
        last_error: OSError | None = None
        for attempt in range(p.connection_attempts):
            if attempt:
                time.sleep(p.retry_delay)
            try:
                sock = socket.create_connection((p.host, p.port), timeout=p.socket_timeout)
            except OSError as e:
                last_error = e
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
            return sock
        raise AMQPConnectionError(
            f"could not connect to {p.host}:{p.port} after {p.connection_attempts} "
            f"attempt(s): {last_error}"
        )

    def _handshake(self) -> None:
        self._engine.start(time.monotonic())
        deadline = time.monotonic() + self.parameters.socket_timeout
        self._pump(lambda: self._engine.is_open, deadline)
        if self._engine.is_open:
            return
        if not self._engine.is_closed:
            self._handle(
                self._engine.abort(AMQPConnectionError("the handshake timed out"))
            )
        assert self._closed_error is not None
        self._error_reported = True
        raise self._closed_error

    def _flush(self) -> None:
        """Write every buffered byte in one ``sendall``."""
        data = self._engine.data_to_send(time.monotonic())
        if data and self._sock is not None:
            try:
                self._sock.sendall(data)
            except OSError as e:
                self._lost(str(e))

    def _lost(self, reason: str) -> None:
        self._handle(self._engine.connection_lost(reason))

    def _pump(
        self, until: Callable[[], bool], deadline: float | None, *, timers: bool = False
    ) -> None:
        """Flush, then read and handle input until ``until()`` or ``deadline`` (monotonic)."""
        engine = self._engine
        self._flush()
        while not until() and not engine.is_closed and self._sock is not None:
            now = time.monotonic()
            wake_at = deadline
            heartbeat_at = engine.next_deadline()
            if heartbeat_at is not None and (wake_at is None or heartbeat_at < wake_at):
                wake_at = heartbeat_at
            if timers and self._timers:
                timer_at = min(t.deadline for t in self._timers.values())
                if wake_at is None or timer_at < wake_at:
                    wake_at = timer_at
            wait = None if wake_at is None else max(0.0, wake_at - now)
            ready = {key.fileobj for key, _ in self._selector.select(wait)}
            now = time.monotonic()
            if self._wake_r in ready:
                self._drain_wakeups()
            if self._sock in ready:
                try:
                    data = self._sock.recv(_RECV_BYTES)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        continue
                    self._lost(str(e))
                    break
                if not data:
                    self._lost("the server closed the socket")
                    break
                self._handle(engine.receive_data(data, now))
            self._handle(engine.tick(now))
            self._flush()
            if deadline is not None and now >= deadline:
                break

    def _poll(self) -> None:
        """Handle whatever input already arrived, without waiting."""
        self._pump(lambda: False, 0.0)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._threadsafe_lock:
            if self._threadsafe:
                self._ready = True

    def _close_sockets(self) -> None:
        """Flush, then close the socket and the wake-up pair; idempotent."""
        if self._sock is not None:
            try:
                self._flush()
            finally:
                if self._sock is not None:
                    self._selector.unregister(self._sock)
                    self._sock.close()
                    self._sock = None
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        _LIVE_CONNECTIONS.discard(self)

    # --- events ---

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
                self._replies[event.token] = event
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
                channel = channels.pop(event.channel, None)
                if channel is not None:
                    channel._on_closed(event.error)
            elif kind is ConnectionClosedEvent:
                assert isinstance(event, ConnectionClosedEvent)
                self._closed_error = event.error
                self._close_sockets()  # flushes a close-ok first
            elif kind is Blocked:
                assert isinstance(event, Blocked)
                frame = MethodFrame(0, event.method)
                for callback in self._blocked_callbacks:
                    self._queue_connection_event(callback, (self, frame))
            elif kind is Unblocked:
                assert isinstance(event, Unblocked)
                frame = MethodFrame(0, event.method)
                for callback in self._unblocked_callbacks:
                    self._queue_connection_event(callback, (self, frame))
            elif kind is ConnectionOpened:
                pass

    def _queue_connection_event(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._connection_events.append((callback, args))
        self._ready = True

    def _timer_due(self) -> bool:
        if not self._timers:
            return False
        now = time.monotonic()
        return any(t.deadline <= now for t in self._timers.values())

    def _dispatch_guard(self) -> _DispatchGuard:
        return _DispatchGuard(self)

    def _dispatch(self) -> None:
        """Run every ready callback: threadsafe requests, timers, connection then channel events.

        A callback's exception propagates to the caller (as in pika); the
        callbacks after it stay queued for the next round.
        """
        self._ready = False
        try:
            self._dispatch_all()
        except BaseException:
            self._ready = True
            raise

    def _dispatch_all(self) -> None:
        if self._threadsafe:
            with self._threadsafe_lock:
                callbacks = list(self._threadsafe)
                self._threadsafe.clear()
            for callback in callbacks:
                callback()
        if self._timers:
            now = time.monotonic()
            due = sorted(
                (t for t in self._timers.values() if t.deadline <= now),
                key=lambda t: (t.deadline, t.id),
            )
            for timer in due:
                if self._timers.pop(timer.id, None) is not None:
                    timer.callback()
        while self._connection_events:
            callback, args = self._connection_events.popleft()
            callback(*args)
        for channel in list(self._channels.values()):
            channel._dispatch()
        # Channels closed since the events were queued still owe their callbacks.
        for channel in list(self._orphans):
            channel._dispatch()
        self._orphans.clear()

    # --- state checks ---

    def _check_open(self) -> None:
        if not self._engine.is_open:
            self._raise_if_failed()
            raise ConnectionWrongStateError(f"the connection is {self._engine.state}")

    def _raise_if_failed(self) -> None:
        """Raise the connection's error once, the first time it is noticed."""
        if self._closed_error is not None and not self._error_reported:
            self._error_reported = True
            raise self._closed_error


class _DispatchGuard:
    """Allows callbacks to run only in the outermost event-processing call (no recursion)."""

    __slots__ = ("_connection", "_owner")

    def __init__(self, connection: BlockingConnection) -> None:
        self._connection = connection
        self._owner = False

    def __enter__(self) -> bool:
        if self._connection._dispatching:
            return False
        self._connection._dispatching = True
        self._owner = True
        return True

    def __exit__(self, *exc_info: object) -> None:
        if self._owner:
            self._connection._dispatching = False


class _Consumer:
    __slots__ = ("auto_ack", "callback", "cancelling", "generator", "inline", "tag")

    def __init__(
        self,
        tag: str,
        callback: OnMessageCallback | None,
        auto_ack: bool,
        generator: _ConsumerGenerator | None = None,
        inline: bool = False,
    ) -> None:
        self.tag = tag
        self.callback = callback
        self.auto_ack = auto_ack
        self.generator = generator
        self.cancelling = False
        #: Library-internal consumers (RPC replies) run as soon as a delivery is read.
        self.inline = inline


class _ConsumerGenerator:
    """State of the one ``consume()`` generator a channel may have (as pika's)."""

    __slots__ = ("cancelled", "consumer_tag", "params", "pending")

    def __init__(self, params: tuple[str, bool, bool], consumer_tag: str) -> None:
        self.params = params
        self.consumer_tag = consumer_tag
        self.pending: deque[Delivery] = deque()
        self.cancelled = False


class BlockingChannel:
    """A channel of a :class:`BlockingConnection`, made by :meth:`BlockingConnection.channel`.

    Methods block until the broker's reply.  A broker-side error (404,
    406 ...) closes the channel and raises ``ChannelClosedByBroker`` from
    the call that was waiting (or the next call on the channel); later calls
    raise ``ChannelWrongStateError``.
    """

    def __init__(self, connection: BlockingConnection, channel_number: int) -> None:
        self._connection = connection
        self._engine = connection._engine
        self._number = channel_number
        self._closed_error: AMQPError | None = None
        self._error_reported = False
        self._consumers: dict[str, _Consumer] = {}
        self._pending: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._return_callbacks: list[OnReturnCallback] = []
        self._cancel_callbacks: list[Callable[[MethodFrame], Any]] = []
        self._confirming = False
        self._confirms: dict[int, Confirmed] = {}
        self._generator: _ConsumerGenerator | None = None
        self._publishes = 0

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<BlockingChannel number={self._number} {state} conn={self._connection!r}>"

    def __int__(self) -> int:
        return self._number

    def __enter__(self) -> BlockingChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.is_open:
            self.close()

    # --- state ---

    @property
    def channel_number(self) -> int:
        """The channel's number on its connection."""
        return self._number

    @property
    def connection(self) -> BlockingConnection:
        """The connection the channel belongs to."""
        return self._connection

    @property
    def is_open(self) -> bool:
        """True until the channel is closed by either side, or its connection closes."""
        return self._closed_error is None and self._engine.channel_is_open(self._number)

    @property
    def is_closed(self) -> bool:
        """True once the channel is closed."""
        return not self.is_open

    @property
    def consumer_tags(self) -> list[str]:
        """The tags of the channel's active consumers."""
        return list(self._consumers)

    # --- engine events ---

    def _on_delivery(self, event: Delivery) -> None:
        consumer = self._consumers.get(event.method.consumer_tag)
        if consumer is None:
            return  # the broker sends none after cancel-ok: nothing to give back
        if consumer.cancelling:
            if consumer.auto_ack:
                # basic_cancel hands these back to the caller (pika's behaviour).
                self._pending.append((_noop, (event,)))
            else:
                # Arrived while cancelling: give it back to the queue.
                self._engine.send(self._number, m.BasicReject(event.method.delivery_tag, True))
            return
        if consumer.inline:
            assert consumer.callback is not None
            consumer.callback(self, event.method, event.properties, event.body)
            return
        if consumer.generator is not None:
            consumer.generator.pending.append(event)
        else:
            assert consumer.callback is not None
            self._pending.append(
                (consumer.callback, (self, event.method, event.properties, event.body))
            )
        self._connection._ready = True

    def _on_returned(self, event: Returned) -> None:
        for callback in self._return_callbacks:
            self._pending.append((callback, (self, event.method, event.properties, event.body)))
            self._connection._ready = True

    def _on_confirmed(self, event: Confirmed) -> None:
        for tag in event.delivery_tags:
            self._confirms[tag] = event

    def _on_broker_cancel(self, event: ConsumerCancelledByBroker) -> None:
        consumer = self._consumers.pop(event.method.consumer_tag, None)
        if consumer is None:
            return
        if consumer.generator is not None:
            consumer.generator.cancelled = True
        frame = MethodFrame(self._number, event.method)
        for callback in self._cancel_callbacks:
            self._pending.append((callback, (frame,)))
        self._connection._ready = True

    def _on_closed(self, error: AMQPError) -> None:
        self._closed_error = error
        self._consumers.clear()
        if self._generator is not None:
            self._generator.cancelled = True
        if self._pending:
            self._connection._orphans.add(self)
        self._connection._ready = True

    def _dispatch(self) -> None:
        pending = self._pending
        while pending:
            callback, args = pending.popleft()
            callback(*args)

    # --- helpers ---

    def _check_open(self) -> None:
        if self._closed_error is not None:
            self._raise_closed()
        self._connection._check_open()
        if not self._engine.channel_is_open(self._number):
            raise ChannelWrongStateError(f"channel {self._number} is closed or closing")

    def _raise_closed(self) -> None:
        """Raise why the channel closed: the broker's (or the connection's) error once,
        then ``ChannelWrongStateError``; a close this client asked for is not an error."""
        error = self._closed_error
        assert error is not None
        if not self._error_reported:
            self._error_reported = True
            if isinstance(error, ChannelClosedByBroker):
                raise error
            connection = self._connection
            if isinstance(error, AMQPConnectionError) and not isinstance(
                error, ConnectionClosedByClient
            ) and not connection._error_reported:
                connection._error_reported = True
                raise error
        raise ChannelWrongStateError(f"channel {self._number} is closed: {error!r}")

    def _wait_reply(self, token: int) -> Reply:
        connection = self._connection
        replies = connection._replies
        connection._pump(
            lambda: token in replies or self._closed_error is not None, None
        )
        reply = replies.pop(token, None)
        if reply is not None:
            return reply
        if self._closed_error is None:  # pragma: no cover - the pump stops only for these
            raise StreamLostError("the connection went away")
        self._raise_closed()
        raise AssertionError("unreachable")  # pragma: no cover

    def _rpc(self, method: m.Method) -> Reply:
        self._check_open()
        return self._wait_reply(self._engine.call(self._number, method))

    def _frame(self, method: m.Method) -> MethodFrame:
        return MethodFrame(self._number, self._rpc(method).method)

    # --- channel ---

    def close(self, reply_code: int = 0, reply_text: str = "Normal shutdown") -> None:
        """Cancel the channel's consumers and close it, waiting for ``close-ok``."""
        self._check_open()
        self._cancel_all_consumers()
        self._engine.close_channel(self._number, reply_code, reply_text)
        self._error_reported = True
        self._connection._pump(lambda: self._closed_error is not None, None)
        self._connection._raise_if_failed()

    def flow(self, active: bool) -> bool:
        """Ask the broker to pause (False) or resume (True) deliveries; returns the new state."""
        reply = self._rpc(m.ChannelFlow(active))
        assert isinstance(reply.method, m.ChannelFlowOk)
        return reply.method.active

    def add_on_cancel_callback(self, callback: Callable[[MethodFrame], Any]) -> None:
        """Call ``callback(method_frame)`` when the broker cancels a consumer (``basic.cancel``)."""
        self._cancel_callbacks.append(callback)

    def add_on_return_callback(self, callback: OnReturnCallback) -> None:
        """Call ``callback(channel, method, properties, body)`` for each returned message."""
        self._return_callbacks.append(callback)

    # --- exchanges ---

    def exchange_declare(
        self,
        exchange: str,
        exchange_type: Any = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> MethodFrame:
        """Declare an exchange; returns the ``exchange.declare-ok`` frame."""
        return self._frame(
            m.ExchangeDeclare(
                exchange, _exchange_type(exchange_type), passive, durable, auto_delete,
                internal, False, dict(arguments or {}),
            )
        )

    def exchange_delete(self, exchange: str | None = None, if_unused: bool = False) -> MethodFrame:
        """Delete an exchange; returns the ``exchange.delete-ok`` frame."""
        return self._frame(m.ExchangeDelete(exchange or "", if_unused, False))

    def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> MethodFrame:
        """Bind exchange ``destination`` to ``source``; returns the ``bind-ok`` frame."""
        return self._frame(
            m.ExchangeBind(destination, source, routing_key, False, dict(arguments or {}))
        )

    def exchange_unbind(
        self,
        destination: str | None = None,
        source: str | None = None,
        routing_key: str = "",
        arguments: Mapping[str, Any] | None = None,
    ) -> MethodFrame:
        """Remove an exchange-to-exchange binding; returns the ``unbind-ok`` frame."""
        return self._frame(
            m.ExchangeUnbind(
                destination or "", source or "", routing_key, False, dict(arguments or {})
            )
        )

    # --- queues ---

    def queue_declare(
        self,
        queue: str,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> MethodFrame:
        """Declare a queue (``""`` for a server-named one).

        Returns the ``queue.declare-ok`` frame: ``.method.queue``,
        ``.method.message_count``, ``.method.consumer_count``.
        """
        return self._frame(
            m.QueueDeclare(
                queue, passive, durable, exclusive, auto_delete, False, dict(arguments or {})
            )
        )

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False
    ) -> MethodFrame:
        """Delete a queue; ``.method.message_count`` is how many messages it held."""
        return self._frame(m.QueueDelete(queue, if_unused, if_empty, False))

    def queue_purge(self, queue: str) -> MethodFrame:
        """Drop a queue's ready messages; ``.method.message_count`` is how many."""
        return self._frame(m.QueuePurge(queue, False))

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> MethodFrame:
        """Bind a queue to an exchange (``routing_key`` defaults to the queue name, as in pika)."""
        if routing_key is None:
            routing_key = queue
        return self._frame(
            m.QueueBind(queue, exchange, routing_key, False, dict(arguments or {}))
        )

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> MethodFrame:
        """Remove a queue binding (``routing_key`` defaults to the queue name)."""
        if routing_key is None:
            routing_key = queue
        return self._frame(
            m.QueueUnbind(queue, exchange or "", routing_key, dict(arguments or {}))
        )

    # --- basic ---

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False
    ) -> None:
        """Limit unacknowledged deliveries per consumer (per channel with ``global_qos``)."""
        self._rpc(m.BasicQos(prefetch_size, prefetch_count, global_qos))

    def _publish_unflushed(
        self, routing_key: str, body: bytes | str, properties: BasicProperties
    ) -> None:
        """Queue a publish to the default exchange without writing it yet.

        For :class:`~amqplike.client.rpc.RpcServer`: its reply and the ack of
        the request then leave in one write (reply first), which saves the
        broker a read and a wake-up per request.  In confirm mode this is
        :meth:`basic_publish`, which must wait for the confirm.
        """
        if self._confirming or self._closed_error is not None:
            self.basic_publish("", routing_key, body, properties)
            return
        if type(body) is not bytes:
            body = _body_bytes(body)
        self._engine.publish(self._number, "", routing_key, body, properties, False)

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        properties: BasicProperties | None = None,
        mandatory: bool = False,
    ) -> None:
        """Publish a message.

        Outside confirm mode the frames are buffered (see the module
        docstring) and an unroutable mandatory message comes back to the
        :meth:`add_on_return_callback` callbacks.  In confirm mode the call
        waits for the broker's confirm and raises ``UnroutableError`` when a
        mandatory message was returned, ``NackError`` when it was nacked.
        """
        if self._closed_error is not None:
            self._raise_closed()
        if type(body) is not bytes:
            body = _body_bytes(body)
        # The engine checks the connection and channel states.
        tag = self._engine.publish(self._number, exchange, routing_key, body, properties, mandatory)
        connection = self._connection
        if not self._confirming:
            if self._engine.pending_output_bytes >= connection.publish_buffer_bytes:
                connection._flush()
                # Look at the input now and then, to report a broker error
                # (e.g. a 404 for a missing exchange) on the publish that follows it.
                self._publishes += 1
                if connection.publish_buffer_bytes or not self._publishes % _POLL_EVERY_PUBLISHES:
                    connection._poll()
                if self._closed_error is not None:
                    self._raise_closed()
            return
        confirms = self._confirms
        connection._pump(lambda: tag in confirms or self._closed_error is not None, None)
        confirm = confirms.pop(tag, None)
        if confirm is None:
            self._raise_closed()
            return
        returned = confirm.returned if confirm.delivery_tag == tag else None
        if not confirm.ack:
            raise NackError([returned] if returned is not None else [])
        if returned is not None:
            raise UnroutableError([returned])

    def basic_get(
        self, queue: str, auto_ack: bool = False
    ) -> tuple[m.BasicGetOk, BasicProperties, bytes] | tuple[None, None, None]:
        """Fetch one message: ``(method, properties, body)``, or ``(None, None, None)`` if empty."""
        reply = self._rpc(m.BasicGet(queue, auto_ack))
        if isinstance(reply.method, m.BasicGetOk):
            return reply.method, reply.properties, reply.body
        return None, None, None

    def basic_consume(
        self,
        queue: str,
        on_message_callback: OnMessageCallback,
        auto_ack: bool = False,
        exclusive: bool = False,
        consumer_tag: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a consumer; returns its tag.

        ``on_message_callback(channel, method, properties, body)`` runs for
        each delivery from :meth:`start_consuming` or
        :meth:`BlockingConnection.process_data_events`; ``method`` has
        ``delivery_tag``, ``redelivered``, ``exchange``, ``routing_key`` and
        ``consumer_tag``.
        """
        if not callable(on_message_callback):
            raise TypeError("on_message_callback must be callable")
        return self._consume(queue, on_message_callback, auto_ack, exclusive, consumer_tag,
                             arguments, None)

    def _consume_inline(self, queue: str, callback: OnMessageCallback, auto_ack: bool) -> str:
        """Start a library-internal consumer whose callback runs as deliveries are read.

        The callback must only record the message: it runs inside the I/O
        loop, even during another blocking call.
        """
        return self._consume(queue, callback, auto_ack, False, None, None, None, inline=True)

    def _consume(
        self,
        queue: str,
        callback: OnMessageCallback | None,
        auto_ack: bool,
        exclusive: bool,
        consumer_tag: str | None,
        arguments: Mapping[str, Any] | None,
        generator: _ConsumerGenerator | None,
        *,
        inline: bool = False,
    ) -> str:
        self._check_open()
        # Named client-side, as pika does, so the consumer is known before consume-ok.
        tag = consumer_tag or f"ctag{self._number}.{uuid.uuid4().hex}"
        if tag in self._consumers:
            raise DuplicateConsumerTag(tag)
        self._consumers[tag] = _Consumer(tag, callback, auto_ack, generator, inline)
        try:
            self._rpc(
                m.BasicConsume(queue, tag, False, auto_ack, exclusive, False,
                               dict(arguments or {}))
            )
        except BaseException:
            self._consumers.pop(tag, None)
            raise
        return tag

    def basic_cancel(self, consumer_tag: str) -> list[tuple[m.BasicDeliver, BasicProperties, bytes]]:
        """Cancel a consumer.

        Deliveries not yet handed to the callback are rejected back to the
        queue for an ``auto_ack=False`` consumer and returned as
        ``(method, properties, body)`` tuples for an ``auto_ack=True`` one (pika's behaviour).
        """
        consumer = self._consumers.get(consumer_tag)
        if consumer is None:
            return []
        self._check_open()
        consumer.cancelling = True
        held = self._take_pending(consumer_tag)
        if not consumer.auto_ack:
            for event in held:
                self._engine.send(self._number, m.BasicReject(event.method.delivery_tag, True))
        try:
            token = self._engine.call(self._number, m.BasicCancel(consumer_tag, False))
            self._wait_reply(token)
        finally:
            self._consumers.pop(consumer_tag, None)
        late = self._take_pending(consumer_tag)
        if not consumer.auto_ack:
            return []
        return [(e.method, e.properties, e.body) for e in held + late]

    def _take_pending(self, consumer_tag: str) -> list[Delivery]:
        """Remove and return undispatched deliveries of a consumer."""
        taken: list[Delivery] = []
        kept: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        for callback, args in self._pending:
            if callback is _noop and args[0].method.consumer_tag == consumer_tag:
                taken.append(args[0])
            elif (
                len(args) == 4
                and isinstance(args[1], m.BasicDeliver)
                and args[1].consumer_tag == consumer_tag
            ):
                taken.append(Delivery(self._number, args[1], args[2], args[3]))
            else:
                kept.append((callback, args))
        self._pending = kept
        generator = self._generator
        if generator is not None and generator.consumer_tag == consumer_tag:
            taken.extend(generator.pending)
            generator.pending.clear()
        return taken

    def _cancel_all_consumers(self) -> None:
        for tag in list(self._consumers):
            self.basic_cancel(tag)
        if self._generator is not None:
            self._generator.cancelled = True
            self._generator = None

    def _cancel_all_consumers_quietly(self) -> None:
        try:
            if self.is_open:
                self._cancel_all_consumers()
        except AMQPError:
            pass

    def start_consuming(self) -> None:
        """Run consumer callbacks until every consumer of the channel is cancelled.

        Raises ``ReentrancyError`` from inside a callback, and
        ``ChannelClosedByBroker`` when the broker closes the channel.
        """
        connection = self._connection
        if connection._dispatching:
            raise ReentrancyError(
                "start_consuming may not be called from inside a callback"
            )
        self._check_open()
        while self._consumers:
            connection.process_data_events(time_limit=None)
            if self._closed_error is not None:
                self._raise_closed()

    def stop_consuming(self, consumer_tag: str | None = None) -> None:
        """Cancel one consumer, or all of them, making :meth:`start_consuming` return."""
        if consumer_tag:
            self.basic_cancel(consumer_tag)
        else:
            self._cancel_all_consumers()

    def consume(
        self,
        queue: str,
        auto_ack: bool = False,
        exclusive: bool = False,
        arguments: Mapping[str, Any] | None = None,
        inactivity_timeout: float | None = None,
        consumer_tag: str | None = None,
    ) -> Generator[
        tuple[m.BasicDeliver, BasicProperties, bytes] | tuple[None, None, None], None, None
    ]:
        """Consume ``queue`` as a generator of ``(method, properties, body)``.

        With ``inactivity_timeout`` it yields ``(None, None, None)`` after
        that many seconds without a message.  It ends when the consumer is
        cancelled (:meth:`cancel`, or by the broker).  Call :meth:`cancel`
        after leaving the loop; a second ``consume`` with the same arguments
        resumes the same consumer (pika's behaviour).
        """
        self._check_open()
        params = (queue, auto_ack, exclusive)
        if self._generator is not None and not self._generator.cancelled:
            if params != self._generator.params:
                raise ValueError(
                    f"consume() with other arguments than the active generator's "
                    f"{self._generator.params!r}: {params!r}"
                )
        else:
            tag = consumer_tag or f"ctag{self._number}.{uuid.uuid4().hex}"
            generator = _ConsumerGenerator(params, tag)
            self._generator = generator
            try:
                self._consume(queue, None, auto_ack, exclusive, tag, arguments, generator)
            except BaseException:
                self._generator = None
                raise
        return self._consume_loop(self._generator, inactivity_timeout)

    def _consume_loop(
        self, generator: _ConsumerGenerator, inactivity_timeout: float | None
    ) -> Generator[
        tuple[m.BasicDeliver, BasicProperties, bytes] | tuple[None, None, None], None, None
    ]:
        connection = self._connection
        while self._generator is generator:
            if generator.pending:
                event = generator.pending.popleft()
                yield event.method, event.properties, event.body
                continue
            if generator.cancelled:
                self._generator = None
                break
            if inactivity_timeout is None:
                connection.process_data_events(time_limit=None)
                self._raise_if_broker_closed()
                continue
            deadline = time.monotonic() + inactivity_timeout
            while (
                self._generator is generator
                and not generator.pending
                and not generator.cancelled
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    yield None, None, None
                    break
                connection.process_data_events(time_limit=remaining)
                self._raise_if_broker_closed()

    def _raise_if_broker_closed(self) -> None:
        if self._closed_error is not None and not self._error_reported:
            self._raise_closed()

    def get_waiting_message_count(self) -> int:
        """How many messages the :meth:`consume` generator holds, ready to yield."""
        return len(self._generator.pending) if self._generator is not None else 0

    def cancel(self) -> int:
        """Cancel the :meth:`consume` generator's consumer, requeueing held messages; returns 0."""
        generator = self._generator
        if generator is None:
            return 0
        try:
            if generator.consumer_tag in self._consumers:
                self.basic_cancel(generator.consumer_tag)
        finally:
            generator.cancelled = True
            self._generator = None
        return 0

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        """Acknowledge a delivery (all up to it with ``multiple``; 0 with ``multiple``: all)."""
        self._check_open()
        self._engine.send(self._number, m.BasicAck(delivery_tag, multiple))
        self._maybe_flush()

    def basic_nack(
        self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True
    ) -> None:
        """Reject one or many deliveries, requeueing them unless ``requeue=False``."""
        self._check_open()
        self._engine.send(self._number, m.BasicNack(delivery_tag, multiple, requeue))
        self._maybe_flush()

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        """Reject one delivery, requeueing it unless ``requeue=False``."""
        self._check_open()
        self._engine.send(self._number, m.BasicReject(delivery_tag, requeue))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        # Outside callbacks an ack goes out at once.  Acks made by callbacks
        # are written together when the dispatch round ends (the event loop
        # flushes before it waits), so a batch of deliveries costs one write.
        connection = self._connection
        pending = self._engine.pending_output_bytes
        if not connection._dispatching or pending >= max(
            connection.publish_buffer_bytes, _ACK_BATCH_BYTES
        ):
            connection._flush()

    def basic_recover(self, requeue: bool = False) -> None:
        """Redeliver the channel's unacknowledged deliveries."""
        self._rpc(m.BasicRecover(requeue))

    def confirm_delivery(self) -> None:
        """Enter publisher-confirm mode: from now on :meth:`basic_publish` waits for each confirm."""
        if self._confirming:
            return
        self._rpc(m.ConfirmSelect(False))
        self._confirming = True


def _noop(*_args: Any) -> None:
    """Placeholder callback marking deliveries kept for ``basic_cancel``."""


__all__ = [
    "DEFAULT_PUBLISH_BUFFER_BYTES",
    "BlockingChannel",
    "BlockingConnection",
    "MethodFrame",
]
