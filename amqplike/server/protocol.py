"""The Twisted server: one :class:`AMQPServerProtocol` per client connection.

``dataReceived`` is thin: bytes go to the sans-IO :class:`FrameDecoder`,
frames to the :class:`CommandAssembler`, and each complete command through a
table of handlers to the broker core.  Replies, deliveries and confirms are
appended to a per-connection output list which the :class:`BrokerFactory`
writes with one ``writeSequence`` per batch of work (the end of each
``dataReceived``, or a timer).

The error boundary follows AMQP 0-9-1: a :class:`ChannelError` closes the
channel (``channel.close``) and the connection carries on; a
:class:`HardError` closes the connection (``connection.close``); any other
exception is a bug, logged with ``log.failure`` and answered with 541.
Nothing escapes ``dataReceived``, ``connectionLost`` or a timer callback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Final, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    IWriteDescriptor,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from amqplike import __version__
from amqplike.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    HardError,
)
from amqplike.server._channel import ServerChannel
from amqplike.server._limits import ServerLimits
from amqplike.server._ports import CoreBroker, CoreChannel, CoreConnection
from amqplike.wire.commands import Command, CommandAssembler, encode_command, encode_method_frame
from amqplike.wire.frames import (
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    MIN_FRAME_MAX_BYTES,
    PROTOCOL_HEADER,
    FrameDecoder,
)
from amqplike.wire.methods import (
    BasicAck,
    BasicCancel,
    BasicCancelOk,
    BasicConsume,
    BasicConsumeOk,
    BasicGet,
    BasicGetEmpty,
    BasicGetOk,
    BasicNack,
    BasicPublish,
    BasicQos,
    BasicQosOk,
    BasicRecover,
    BasicRecoverOk,
    BasicReject,
    ChannelClose,
    ChannelCloseOk,
    ChannelFlow,
    ChannelFlowOk,
    ChannelOpen,
    ChannelOpenOk,
    ConfirmSelect,
    ConfirmSelectOk,
    ConnectionBlocked,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUnblocked,
    ExchangeBind,
    ExchangeBindOk,
    ExchangeDeclare,
    ExchangeDeclareOk,
    ExchangeDelete,
    ExchangeDeleteOk,
    ExchangeUnbind,
    ExchangeUnbindOk,
    Method,
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
    decode_method,
)

#: Users that may log in only from a loopback address (RabbitMQ's ``loopback_users``).
LOOPBACK_USERS: Final = frozenset({"guest"})

#: The one answer to a failed login, for an unknown user and a wrong password alike.
LOGIN_REFUSED_TEXT: Final = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
    "For details see the broker logfile."
)

#: What ``connection.start`` tells clients about us (RabbitMQ's capability names).
SERVER_PROPERTIES: Final = {
    "product": "amqplike",
    "version": __version__,
    "platform": "Python/Twisted",
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "per_consumer_qos": True,
        "authentication_failure_close": True,
    },
}

# Connection states, in the order a connection goes through them.
_AWAIT_HEADER: Final = 0
_AWAIT_START_OK: Final = 1
_AWAIT_TUNE_OK: Final = 2
_AWAIT_OPEN: Final = 3
_OPEN: Final = 4
#: The server sent ``connection.close`` and waits for ``close-ok``.
_CLOSING: Final = 5
#: The socket is being dropped; input is ignored.
_CLOSED: Final = 6

_EXPECTED: Final[dict[int, type[Method]]] = {
    _AWAIT_START_OK: ConnectionStartOk,
    _AWAIT_TUNE_OK: ConnectionTuneOk,
    _AWAIT_OPEN: ConnectionOpen,
}

_Handler = Callable[["AMQPServerProtocol", ServerChannel, Any, Command], "Method | None"]


def describe_peer(address: IAddress) -> str:
    """Return ``host:port``, ``[v6host]:port`` or ``unix:path`` for log lines."""
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        path = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        return f"unix:{path or '?'}"
    return str(address)


def is_loopback(address: IAddress) -> bool:
    """True for 127.0.0.0/8, ``::1`` (also IPv4-mapped) and UNIX sockets."""
    if isinstance(address, UNIXAddress):
        return True
    if isinstance(address, (IPv4Address, IPv6Address)):
        try:
            ip = ipaddress.ip_address(address.host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback
    return False


@implementer(IPushProducer)
class AMQPServerProtocol(Protocol):
    """The server side of one client connection.

    Also the transport's streaming producer: when the transport's write
    buffer fills (a slow consumer), Twisted calls :meth:`pauseProducing` and
    deliveries to this connection's channels stop until :meth:`resumeProducing`.

    The other direction is publisher flow control (docs/durability.md,
    "Publisher flow control"): once a connection has published, the factory
    may stop *reading* from it (:meth:`set_reading_paused`, which calls the
    transport's own ``pauseProducing``) while the store's backlog is above
    its high watermark.
    """

    log = Logger()

    def __init__(self, factory: BrokerFactory) -> None:
        self.factory = factory
        self._factory = factory
        self._broker = factory.broker
        self._clock = factory.clock
        self._limits = limits = factory.limits
        self._address: IAddress | None = None
        #: ``host:port`` of the client, for log lines.
        self.peer = "?"
        self._state = _AWAIT_HEADER
        self._header = b""
        self._decoder = FrameDecoder(MIN_FRAME_MAX_BYTES)
        self._assembler = CommandAssembler(limits.max_body_bytes)
        #: The negotiated limits (until ``tune-ok``: the handshake's).
        self.frame_max = MIN_FRAME_MAX_BYTES
        self.channel_max = limits.channel_max
        self.heartbeat = 0
        self.user: str | None = None
        self.vhost: str | None = None
        self._channels: dict[int, ServerChannel] = {}
        self._core: CoreConnection | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        #: The transport, when it can be asked to write at once (plain TCP, not TLS).
        self._write_now: IWriteDescriptor | None = None
        self._confirm_channels: list[ServerChannel] = []
        self._now = 0.0
        self._last_read = 0.0
        self._last_write = 0.0
        self._handshake_call: IDelayedCall | None = None
        self._heartbeat_call: IDelayedCall | None = None
        self._close_call: IDelayedCall | None = None
        # Deliveries are paused while either the transport or our own batch
        # buffer is too full.
        self._transport_paused = False
        self._buffer_paused = False
        self._lost = False
        self._close_reason: str | None = None
        #: The client listed ``connection.blocked`` in its capabilities (RabbitMQ's rule).
        self.wants_blocked = False
        #: ``connection.blocked`` was sent and not yet followed by ``unblocked``.
        self._told_blocked = False
        #: This connection has published (it is subject to publisher flow control).
        self.publisher = False
        #: We stopped reading from the transport (publisher flow control).
        self.reading_paused = False

    # -- connection events ---------------------------------------------------

    def connectionMade(self) -> None:
        """Start the handshake timer and register as the transport's producer."""
        transport = self.transport
        assert transport is not None
        self._now = self._last_read = self._last_write = self._clock.seconds()
        try:
            self._address = transport.getPeer()
            self.peer = describe_peer(self._address)
            if ITCPTransport.providedBy(transport):
                # Small frames (acks, confirms) must not wait for Nagle.
                transport.setTcpNoDelay(True)
            cast(IConsumer, transport).registerProducer(self, True)
            if IWriteDescriptor.providedBy(transport):
                self._write_now = cast(IWriteDescriptor, transport)
            self._handshake_call = self._clock.callLater(
                self._limits.handshake_timeout_seconds, self._handshake_timed_out
            )
            self._factory.connection_made(self)
        except Exception:
            self.log.failure("Setting up the connection from {peer} failed", peer=self.peer)
            self._drop("internal error", abort=True)
        self.log.debug("Connection from {peer}", peer=self.peer)

    def dataReceived(self, data: bytes) -> None:
        """Decode ``data`` and act on every complete frame; never raises."""
        if self._state == _CLOSED:
            return
        factory = self._factory
        self._now = self._last_read = self._clock.seconds()
        # The core reads no clock: it learns the time here, once per batch
        # (delivery times for the consumer ack timeout, TTL checks).
        self._broker.advance(self._now)
        factory.batch_depth += 1
        try:
            self._receive(data)
        except Exception:
            self.log.failure("Unexpected error on connection from {peer}", peer=self.peer)
            self._internal_error()
        finally:
            factory.batch_depth -= 1
            factory.flush_if_idle()
            factory.stay_awake()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Close the core connection (requeueing unacked deliveries); idempotent, never raises."""
        if self._lost:
            return
        self._lost = True
        self._state = _CLOSED
        factory = self._factory
        factory.batch_depth += 1
        try:
            # Requeued messages may be delivered elsewhere now: the core needs the time.
            self._broker.advance(self._clock.seconds())
            self._cancel_timers()
            self._out = []
            self._out_bytes = 0
            self._confirm_channels = []
            self._channels.clear()
            self._close_core()
            self.log.info(
                "Connection closed: {peer} user={user} vhost={vhost}: {reason}",
                peer=self.peer,
                user=self.user,
                vhost=self.vhost,
                reason=self._close_reason or reason.getErrorMessage(),
            )
        except Exception:
            self.log.failure("Cleaning up the connection from {peer} failed", peer=self.peer)
        finally:
            factory.connection_lost(self)
            factory.batch_depth -= 1
            # Requeued messages may have gone to other connections.
            factory.flush_if_idle()

    # -- IPushProducer -------------------------------------------------------

    def pauseProducing(self) -> None:
        """The transport's buffer is full: stop deliveries to this connection."""
        if not self._transport_paused:
            self._transport_paused = True
            self._guarded(self._update_flow)

    def resumeProducing(self) -> None:
        """The transport's buffer drained: deliveries may flow again."""
        if self._transport_paused:
            self._transport_paused = False
            self._guarded(self._update_flow)

    def stopProducing(self) -> None:
        """The connection is going away; :meth:`connectionLost` cleans up."""

    # -- publisher flow control (reading, not writing) -------------------------

    def set_reading_paused(self, paused: bool) -> None:
        """Stop or resume reading from the socket (publisher flow control); never raises.

        Unlike :meth:`pauseProducing` (the transport telling us to stop
        *writing*), this pauses the transport as a producer of input: the
        kernel's receive buffer fills and TCP pushes back on the client.
        Ignored once the connection is lost.
        """
        if paused == self.reading_paused or self._lost:
            return
        self.reading_paused = paused
        transport = self.transport
        if transport is None:
            return
        if not paused:
            # Silence while we did not read is not the peer's fault (heartbeats).
            self._last_read = self._clock.seconds()
        try:
            producer = cast(IPushProducer, transport)
            if paused:
                producer.pauseProducing()
            else:
                producer.resumeProducing()
        except Exception:
            self.log.failure("Pausing reads from {peer} failed", peer=self.peer)

    def _become_publisher(self) -> None:
        self.publisher = True
        self._factory.publisher_added(self)

    # -- output ----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the next batch write."""
        if not self._out:
            if self._state == _CLOSED:
                return
            self._factory.mark_dirty(self)
        self._out.append(data)
        self._out_bytes += len(data)

    def _insert(self, index: int, data: bytes) -> None:
        """Queue ``data`` before what was queued since ``len(_out)`` was ``index``."""
        if index >= len(self._out):
            self.send(data)
        else:
            self._out.insert(index, data)
            self._out_bytes += len(data)

    def check_buffered(self) -> None:
        """Pause deliveries when this batch's output grows past the cap."""
        if self._out_bytes > self._limits.max_buffered_bytes and not self._buffer_paused:
            self._buffer_paused = True
            self._update_flow()

    def want_confirm_flush(self, channel: ServerChannel) -> None:
        """Note that ``channel`` holds confirms to write with this batch."""
        if channel not in self._confirm_channels:
            self._confirm_channels.append(channel)
        if not self._out:
            self._factory.mark_dirty(self)

    def send_confirms(self, channel: ServerChannel) -> None:
        """Queue ``channel``'s pending confirms now, before what follows."""
        if channel.has_pending_confirms:
            for frame in channel.confirm_frames():
                self.send(frame)

    def flush(self, now: float | None = None) -> None:
        """Write the batch: pending confirms last, then one ``writeSequence``.

        ``now`` (the flush time, read once per batch by the factory) becomes
        the last-write time the heartbeat timer looks at.
        """
        if self._confirm_channels:
            channels, self._confirm_channels = self._confirm_channels, []
            for channel in channels:
                self.send_confirms(channel)
        out = self._out
        if not out or self._lost:
            return
        self._out = []
        self._out_bytes = 0
        transport = self.transport
        if transport is not None:
            self._last_write = self._now if now is None else now
            transport.writeSequence(out)
            if self._write_now and self._state != _CLOSED:
                # Twisted only queues the bytes and sends them on the reactor's
                # next write-readiness pass: one more epoll round (and its
                # dispatch) per reply, which is most of a small request's
                # latency.  The socket is almost always writable, so send now;
                # what the kernel does not take stays queued as before.  A
                # lost connection is found by the reactor's own next pass.
                self._write_now.doWrite()
        if self._buffer_paused:
            self._buffer_paused = False
            self._update_flow()

    def _update_flow(self) -> None:
        """Tell the core which channels may receive deliveries now."""
        paused = self._transport_paused or self._buffer_paused
        for channel in self._channels.values():
            core = channel.core
            if core is not None and channel.client_active:
                core.flow(not paused)

    # -- input -----------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        if self._state == _AWAIT_HEADER:
            data = self._receive_header(data)
            if not data:
                return
        try:
            frames = self._decoder.feed(data)
        except HardError as e:
            # The stream is out of step: nothing after this can be parsed, so
            # send the reason and drop the socket without waiting for close-ok.
            if self._state >= _CLOSING:
                self._drop(self._close_reason or "frame error while closing")
            else:
                self._hard_error(e, 0, drop=True)
            return
        for frame_type, channel, payload in frames:
            if self._state >= _CLOSING:
                self._frame_while_closing(frame_type, channel, payload)
                continue
            try:
                self._frame(frame_type, channel, payload)
            except ChannelError as e:
                self._channel_error(channel, e)
            except AMQPError as e:
                self._hard_error(e, channel)

    def _receive_header(self, data: bytes) -> bytes:
        """Collect the 10-byte protocol header; return the bytes after it."""
        header = self._header + data
        size = len(PROTOCOL_HEADER)
        if header[:size] != PROTOCOL_HEADER[: len(header)]:
            # AMQP 0-9-1, 4.2.2: answer with the header we speak and close.
            self.log.warn(
                "Bad protocol header {header!r} from {peer}",
                header=header[:size],
                peer=self.peer,
                channel=0,
                code=None,
            )
            self._close_reason = "bad protocol header"
            self.send(PROTOCOL_HEADER)
            self._drop("bad protocol header")
            return b""
        if len(header) < size:
            self._header = header
            return b""
        self._header = b""
        self._state = _AWAIT_START_OK
        self.send(
            encode_method_frame(
                0,
                ConnectionStart(0, 1, SERVER_PROPERTIES, "PLAIN", "en_US"),
            )
        )
        return header[size:]

    def _frame(self, frame_type: int, number: int, payload: bytes) -> None:
        if frame_type == FRAME_HEARTBEAT:
            if number != 0:
                raise HardError(FRAME_ERROR, f"heartbeat frame on channel {number}")
            return
        if number == 0:
            if frame_type != FRAME_METHOD:
                raise HardError(UNEXPECTED_FRAME, f"content frame (type {frame_type}) on channel 0")
            self._connection_method(decode_method(payload))
            return
        if self._state != _OPEN:
            raise HardError(COMMAND_INVALID, f"channel {number} used before the connection is open")
        channel = self._channels.get(number)
        if channel is None:
            self._unopened_channel_frame(frame_type, number, payload)
        elif channel.closing:
            self._closing_channel_frame(channel, frame_type, payload)
        else:
            command = self._assembler.feed(frame_type, number, payload)
            if command is not None:
                self._dispatch(channel, command)

    def _frame_while_closing(self, frame_type: int, number: int, payload: bytes) -> None:
        """After our ``connection.close``, only ``close``/``close-ok`` matter (AMQP 2.2.4)."""
        if self._state == _CLOSED or number != 0 or frame_type != FRAME_METHOD:
            return
        try:
            method = decode_method(payload)
        except AMQPError:
            return
        if isinstance(method, ConnectionCloseOk):
            self._drop(self._close_reason or "closed")
        elif isinstance(method, ConnectionClose):
            self.send(encode_method_frame(0, ConnectionCloseOk()))
            self._drop(self._close_reason or "closed")

    def _unopened_channel_frame(self, frame_type: int, number: int, payload: bytes) -> None:
        if frame_type != FRAME_METHOD:
            raise HardError(CHANNEL_ERROR, f"expected 'channel.open' on channel {number}")
        method = decode_method(payload)
        if isinstance(method, ChannelOpen):
            self._open_channel(number)
        elif isinstance(method, ChannelCloseOk):
            pass  # A late answer to a close we already forgot about.
        elif method.CLASS_ID == ConnectionClose.CLASS_ID:
            raise _misplaced(method, number)
        else:
            raise HardError(
                CHANNEL_ERROR,
                f"expected 'channel.open' on channel {number}, got '{method.NAME}'",
                class_id=method.CLASS_ID,
                method_id=method.METHOD_ID,
            )

    def _closing_channel_frame(
        self, channel: ServerChannel, frame_type: int, payload: bytes
    ) -> None:
        """After our ``channel.close``, only ``close``/``close-ok`` matter (AMQP 2.2.4)."""
        if frame_type != FRAME_METHOD:
            return
        try:
            method = decode_method(payload)
        except AMQPError:
            return
        if isinstance(method, ChannelCloseOk):
            del self._channels[channel.number]
        elif isinstance(method, ChannelClose):
            # Both sides closed at once: answer, and still wait for our close-ok.
            self.send(encode_method_frame(channel.number, ChannelCloseOk()))

    def _dispatch(self, channel: ServerChannel, command: Command) -> None:
        method = command.method
        handler = _HANDLERS.get(type(method))
        if handler is None:
            raise _misplaced(method, channel.number)
        mark = len(self._out)
        try:
            reply = handler(self, channel, method, command)
        except AMQPError as e:
            if not e.class_id:
                e.class_id, e.method_id = method.CLASS_ID, method.METHOD_ID
            raise
        if reply is not None:
            # The reply goes before whatever the call delivered (a consume
            # with ready messages sends consume-ok, then the deliveries).
            self._insert(mark, encode_method_frame(channel.number, reply))

    # -- errors and closing -------------------------------------------------------

    def close_channel(self, number: int, error: ChannelError) -> None:
        """Close channel ``number`` with ``error`` for the core (a consumer ack timeout).

        As for a soft error of the client's: ``channel.close`` is sent and the
        channel's frames are discarded until ``close-ok``.
        """
        if number in self._channels and self._state == _OPEN:
            self._channel_error(number, error)

    def _channel_error(self, number: int, error: ChannelError) -> None:
        """Close one channel with ``channel.close``; the connection carries on."""
        channel = self._channels.get(number)
        if channel is None or number == 0:
            self._hard_error(error, number)
            return
        self.log.warn(
            "Closing channel {channel} of {peer} with {code}: {text}",
            peer=self.peer,
            channel=number,
            code=error.reply_code,
            text=error.reply_text,
        )
        self._assembler.discard(number)
        self.send_confirms(channel)
        channel.closing = True
        self.send(
            encode_method_frame(
                number,
                ChannelClose(error.reply_code, error.reply_text, error.class_id, error.method_id),
            )
        )
        core, channel.core = channel.core, None
        if core is not None:
            core.close()

    def _hard_error(self, error: AMQPError, number: int, *, drop: bool = False) -> None:
        """Close the connection with ``connection.close`` for a connection error."""
        self.log.warn(
            "Closing connection of {peer} with {code}: {text}",
            peer=self.peer,
            channel=number,
            code=error.reply_code,
            text=error.reply_text,
        )
        self.close(
            error.reply_code,
            error.reply_text,
            error.class_id,
            error.method_id,
            drop=drop,
        )

    def _internal_error(self) -> None:
        """A bug was logged: close with 541 without letting anything escape."""
        try:
            self.close(INTERNAL_ERROR, "INTERNAL_ERROR")
        except Exception:
            self.log.failure("Closing the connection from {peer} failed", peer=self.peer)
            self._drop("internal error", abort=True)

    def _guarded(self, function: Callable[[], object]) -> None:
        """Run ``function`` as a batch of its own (timers, producer calls); never raises."""
        factory = self._factory
        factory.batch_depth += 1
        try:
            self._now = self._clock.seconds()
            self._broker.advance(self._now)
            function()
        except Exception:
            self.log.failure("Unexpected error on connection from {peer}", peer=self.peer)
            self._internal_error()
        finally:
            factory.batch_depth -= 1
            factory.flush_if_idle()

    def close_guarded(self, reply_code: int, reply_text: str, *, drop: bool = False) -> None:
        """:meth:`close` as a batch of its own, for callers outside the protocol; never raises."""
        self._guarded(lambda: self.close(reply_code, reply_text, drop=drop))

    def close(
        self,
        reply_code: int = CONNECTION_FORCED,
        reply_text: str = "CONNECTION_FORCED - broker forced connection closure",
        class_id: int = 0,
        method_id: int = 0,
        *,
        drop: bool = False,
    ) -> None:
        """Start closing: send ``connection.close``, then wait for ``close-ok``.

        The core connection is closed at once (its unacked deliveries are
        requeued); the socket is dropped on ``close-ok``, after the close
        timeout, or at once with ``drop=True`` (the stream is unusable).
        """
        if self._state >= _CLOSING:
            return
        self._state = _CLOSING
        self._close_reason = f"closed by server: {reply_text}"
        # Read again so that close-ok can arrive (later publishes are discarded).
        self.set_reading_paused(False)
        self._cancel_timers()
        # Confirms already earned are still worth sending before the close.
        for channel in self._channels.values():
            self.send_confirms(channel)
        self._channels.clear()
        self._close_core()
        self.send(
            encode_method_frame(0, ConnectionClose(reply_code, reply_text, class_id, method_id))
        )
        if drop:
            self._drop(self._close_reason)
        else:
            self._close_call = self._clock.callLater(
                self._limits.close_timeout_seconds, self._close_timed_out
            )

    def _drop(self, reason: str, *, abort: bool = False) -> None:
        """Write what is queued and close the socket; input is ignored from now on."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        if self._close_reason is None:
            self._close_reason = reason
        self._cancel_timers()
        self.flush()
        transport = self.transport
        if transport is not None:
            abort_connection = getattr(transport, "abortConnection", None)
            if abort and abort_connection is not None:
                abort_connection()
            else:
                transport.loseConnection()

    def _close_core(self) -> None:
        for channel in self._channels.values():
            channel.core = None
        core, self._core = self._core, None
        if core is not None:
            core.close()

    def _cancel_timers(self) -> None:
        for name in ("_handshake_call", "_heartbeat_call", "_close_call"):
            call: IDelayedCall | None = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()

    # -- timers ------------------------------------------------------------------

    def _handshake_timed_out(self) -> None:
        self._handshake_call = None
        if self._state < _OPEN:
            self.log.warn(
                "Handshake with {peer} not done in {seconds} s; dropping",
                peer=self.peer,
                seconds=self._limits.handshake_timeout_seconds,
                channel=0,
                code=None,
            )
            self._guarded(lambda: self._drop("handshake timeout", abort=True))

    def _close_timed_out(self) -> None:
        self._close_call = None
        self.log.info("No connection.close-ok from {peer}; dropping", peer=self.peer)
        self._guarded(lambda: self._drop(self._close_reason or "close timeout", abort=True))

    def _start_heartbeat(self) -> None:
        if self.heartbeat > 0:
            self._heartbeat_call = self._clock.callLater(self.heartbeat / 2, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        """One timer per connection: send a heartbeat after h/2 s of silence, drop a peer
        silent for 2h s (docs/protocol.md, 6), then re-arm for the next deadline."""
        self._heartbeat_call = None
        self._guarded(self._check_heartbeat)

    def _check_heartbeat(self) -> None:
        if self._state >= _CLOSING:
            return
        now = self._now
        interval = self.heartbeat
        if self.reading_paused:
            # We are not listening (publisher flow control): the peer is not silent.
            self._last_read = now
        if now - self._last_read >= 2 * interval:
            self.log.warn(
                "Missed heartbeats from {peer}: silent for {seconds:.1f} s; dropping",
                peer=self.peer,
                seconds=now - self._last_read,
                channel=0,
                code=None,
            )
            self._drop("missed heartbeats", abort=True)
            return
        half = interval / 2
        if now - self._last_write >= half:
            self.send(HEARTBEAT_FRAME)
            self.flush()
        delay = min(self._last_write + half, self._last_read + 2 * interval) - now
        self._heartbeat_call = self._clock.callLater(max(delay, 0.0), self._heartbeat_tick)

    # -- channel 0: handshake and connection methods ---------------------------------

    def _connection_method(self, method: Method) -> None:
        try:
            self._connection_method_inner(method)
        except AMQPError as e:
            if not e.class_id:
                e.class_id, e.method_id = method.CLASS_ID, method.METHOD_ID
            raise

    def _connection_method_inner(self, method: Method) -> None:
        if isinstance(method, ConnectionClose):
            self._client_close(method)
            return
        state = self._state
        expected = _EXPECTED.get(state)
        if expected is not None and type(method) is expected:
            if isinstance(method, ConnectionStartOk):
                self._start_ok(method)
            elif isinstance(method, ConnectionTuneOk):
                self._tune_ok(method)
            elif isinstance(method, ConnectionOpen):
                self._open(method)
            return
        if method.CLASS_ID != ConnectionClose.CLASS_ID:
            raise _misplaced(method, 0)
        wanted = f"; expected '{expected.NAME}'" if expected is not None else ""
        raise HardError(COMMAND_INVALID, f"unexpected '{method.NAME}'{wanted}")

    def _start_ok(self, method: ConnectionStartOk) -> None:
        if method.mechanism != "PLAIN":
            raise HardError(
                COMMAND_INVALID, f"unknown authentication mechanism '{method.mechanism}'"
            )
        user, password = _parse_plain(method.response)
        if user is None or password is None or not self._broker.authenticate(user, password):
            self.log.warn(
                "Login refused for {user!r} from {peer}",
                user=user,
                peer=self.peer,
                channel=0,
                code=ACCESS_REFUSED,
            )
            self.close(ACCESS_REFUSED, LOGIN_REFUSED_TEXT, method.CLASS_ID, method.METHOD_ID)
            return
        if user in LOOPBACK_USERS and (self._address is None or not is_loopback(self._address)):
            # As RabbitMQ: the default account works from the broker's own host only.
            self._hard_error(
                HardError(
                    ACCESS_REFUSED,
                    f"user '{user}' can only connect via localhost",
                    class_id=method.CLASS_ID,
                    method_id=method.METHOD_ID,
                ),
                0,
            )
            return
        self.user = user
        capabilities = method.client_properties.get("capabilities")
        if isinstance(capabilities, dict):
            self.wants_blocked = capabilities.get("connection.blocked") is True
        self._state = _AWAIT_TUNE_OK
        limits = self._limits
        self.send(
            encode_method_frame(
                0, ConnectionTune(limits.channel_max, limits.frame_max, limits.heartbeat)
            )
        )

    def _tune_ok(self, method: ConnectionTuneOk) -> None:
        limits = self._limits
        frame_max = method.frame_max
        if frame_max < MIN_FRAME_MAX_BYTES or frame_max > limits.frame_max:
            raise HardError(
                FRAME_ERROR,
                f"frame_max={frame_max} outside [{MIN_FRAME_MAX_BYTES}, {limits.frame_max}]",
            )
        channel_max = method.channel_max or limits.channel_max
        if channel_max > limits.channel_max:
            raise HardError(
                COMMAND_INVALID, f"channel_max={channel_max} > {limits.channel_max} max"
            )
        if method.heartbeat > limits.heartbeat:
            raise HardError(
                COMMAND_INVALID, f"heartbeat={method.heartbeat} > {limits.heartbeat} max"
            )
        self.frame_max = frame_max
        self._decoder.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat = method.heartbeat
        self._state = _AWAIT_OPEN
        self._start_heartbeat()

    def _open(self, method: ConnectionOpen) -> None:
        assert self.user is not None
        self._core = self._broker.connect(vhost=method.virtual_host, user=self.user)
        self.vhost = method.virtual_host
        self._state = _OPEN
        call, self._handshake_call = self._handshake_call, None
        if call is not None and call.active():
            call.cancel()
        self.send(encode_method_frame(0, ConnectionOpenOk()))
        self.log.info(
            "Connection opened: {peer} user={user} vhost={vhost}",
            peer=self.peer,
            user=self.user,
            vhost=self.vhost,
        )
        self.notify_blocked(self._factory.blocked_reason)

    def notify_blocked(self, reason: str | None) -> None:
        """Send ``connection.blocked`` (a reason) or ``connection.unblocked`` (None).

        Only to an open connection whose client listed the ``connection.blocked``
        capability, as RabbitMQ does, and only on a change.
        """
        if self._state != _OPEN or not self.wants_blocked:
            return
        if reason is not None and not self._told_blocked:
            self._told_blocked = True
            self.send(encode_method_frame(0, ConnectionBlocked(reason)))
        elif reason is None and self._told_blocked:
            self._told_blocked = False
            self.send(encode_method_frame(0, ConnectionUnblocked()))

    def _client_close(self, method: ConnectionClose) -> None:
        """The client closes: close everything, answer ``close-ok``, drop the socket."""
        self._close_reason = f"closed by client: ({method.reply_code}) {method.reply_text}"
        for channel in self._channels.values():
            self.send_confirms(channel)
        self._channels.clear()
        self._close_core()
        self.send(encode_method_frame(0, ConnectionCloseOk()))
        self._drop(self._close_reason)

    # -- channels ------------------------------------------------------------------------

    def _open_channel(self, number: int) -> None:
        if number > self.channel_max:
            raise HardError(
                NOT_ALLOWED,
                f"channel {number} is above the negotiated channel_max ({self.channel_max})",
                class_id=ChannelOpen.CLASS_ID,
                method_id=ChannelOpen.METHOD_ID,
            )
        assert self._core is not None
        channel = ServerChannel(self, number)
        channel.core = self._core.open_channel(number, channel)
        self._channels[number] = channel
        if self._transport_paused or self._buffer_paused:
            channel.core.flow(False)
        self.send(encode_method_frame(number, ChannelOpenOk()))

    def _channel_open(
        self, channel: ServerChannel, method: ChannelOpen, command: Command
    ) -> Method | None:
        raise HardError(CHANNEL_ERROR, f"second 'channel.open' seen on channel {channel.number}")

    def _channel_close(
        self, channel: ServerChannel, method: ChannelClose, command: Command
    ) -> Method | None:
        number = channel.number
        self.send_confirms(channel)
        del self._channels[number]
        self._assembler.discard(number)
        core, channel.core = channel.core, None
        if core is not None:
            core.close()
        self.send(encode_method_frame(number, ChannelCloseOk()))
        return None

    def _channel_close_ok(
        self, channel: ServerChannel, method: ChannelCloseOk, command: Command
    ) -> Method | None:
        return None  # Nothing of ours to confirm on an open channel; ignore.

    def _channel_flow(
        self, channel: ServerChannel, method: ChannelFlow, command: Command
    ) -> Method | None:
        channel.client_active = method.active
        core = _core(channel)
        core.flow(method.active and not (self._transport_paused or self._buffer_paused))
        return ChannelFlowOk(method.active)

    # -- exchange, queue -----------------------------------------------------------------------

    def _exchange_declare(
        self, channel: ServerChannel, m: ExchangeDeclare, command: Command
    ) -> Method | None:
        _core(channel).exchange_declare(
            m.exchange,
            type=m.type,
            passive=m.passive,
            durable=m.durable,
            auto_delete=m.auto_delete,
            internal=m.internal,
            arguments=m.arguments,
        )
        return None if m.nowait else ExchangeDeclareOk()

    def _exchange_delete(
        self, channel: ServerChannel, m: ExchangeDelete, command: Command
    ) -> Method | None:
        _core(channel).exchange_delete(m.exchange, if_unused=m.if_unused)
        return None if m.nowait else ExchangeDeleteOk()

    def _exchange_bind(
        self, channel: ServerChannel, m: ExchangeBind, command: Command
    ) -> Method | None:
        _core(channel).exchange_bind(
            m.destination, m.source, routing_key=m.routing_key, arguments=m.arguments
        )
        return None if m.nowait else ExchangeBindOk()

    def _exchange_unbind(
        self, channel: ServerChannel, m: ExchangeUnbind, command: Command
    ) -> Method | None:
        _core(channel).exchange_unbind(
            m.destination, m.source, routing_key=m.routing_key, arguments=m.arguments
        )
        return None if m.nowait else ExchangeUnbindOk()

    def _queue_declare(
        self, channel: ServerChannel, m: QueueDeclare, command: Command
    ) -> Method | None:
        name, messages, consumers = _core(channel).queue_declare(
            m.queue,
            passive=m.passive,
            durable=m.durable,
            exclusive=m.exclusive,
            auto_delete=m.auto_delete,
            arguments=m.arguments,
        )
        return None if m.nowait else QueueDeclareOk(name, messages, consumers)

    def _queue_bind(self, channel: ServerChannel, m: QueueBind, command: Command) -> Method | None:
        _core(channel).queue_bind(
            m.queue, m.exchange, routing_key=m.routing_key, arguments=m.arguments
        )
        return None if m.nowait else QueueBindOk()

    def _queue_unbind(
        self, channel: ServerChannel, m: QueueUnbind, command: Command
    ) -> Method | None:
        _core(channel).queue_unbind(
            m.queue, m.exchange, routing_key=m.routing_key, arguments=m.arguments
        )
        return QueueUnbindOk()

    def _queue_purge(
        self, channel: ServerChannel, m: QueuePurge, command: Command
    ) -> Method | None:
        count = _core(channel).queue_purge(m.queue)
        return None if m.nowait else QueuePurgeOk(count)

    def _queue_delete(
        self, channel: ServerChannel, m: QueueDelete, command: Command
    ) -> Method | None:
        count = _core(channel).queue_delete(m.queue, if_unused=m.if_unused, if_empty=m.if_empty)
        return None if m.nowait else QueueDeleteOk(count)

    # -- basic, confirm ------------------------------------------------------------------------

    def _basic_qos(self, channel: ServerChannel, m: BasicQos, command: Command) -> Method | None:
        _core(channel).basic_qos(m.prefetch_size, m.prefetch_count, m.global_)
        return BasicQosOk()

    def _basic_consume(
        self, channel: ServerChannel, m: BasicConsume, command: Command
    ) -> Method | None:
        # no_local is accepted and ignored, as RabbitMQ does.
        tag = _core(channel).basic_consume(
            m.queue,
            consumer_tag=m.consumer_tag,
            no_ack=m.no_ack,
            exclusive=m.exclusive,
            arguments=m.arguments,
        )
        return None if m.nowait else BasicConsumeOk(tag)

    def _basic_cancel(
        self, channel: ServerChannel, m: BasicCancel, command: Command
    ) -> Method | None:
        _core(channel).basic_cancel(m.consumer_tag)
        return None if m.nowait else BasicCancelOk(m.consumer_tag)

    def _basic_cancel_ok(
        self, channel: ServerChannel, m: BasicCancelOk, command: Command
    ) -> Method | None:
        return None  # The answer to our consumer cancel notification.

    def _basic_publish(
        self, channel: ServerChannel, m: BasicPublish, command: Command
    ) -> Method | None:
        if m.immediate:
            raise HardError(NOT_IMPLEMENTED, "immediate=true")
        core = _core(channel)
        if not self.publisher:
            self._become_publisher()
        channel.count_publish()
        try:
            core.basic_publish(
                m.exchange,
                m.routing_key,
                command.properties,
                command.body,
                mandatory=m.mandatory,
                now=self._now,
            )
        except BaseException:
            channel.uncount_publish()
            raise
        return None

    def _basic_get(self, channel: ServerChannel, m: BasicGet, command: Command) -> Method | None:
        result = _core(channel).basic_get(m.queue, no_ack=m.no_ack)
        if result is None:
            return BasicGetEmpty()
        message = result.message
        self.send(
            encode_command(
                channel.number,
                BasicGetOk(
                    result.delivery_tag,
                    result.redelivered,
                    message.exchange,
                    message.routing_key,
                    result.message_count,
                ),
                message.properties,
                message.body,
                self.frame_max,
            )
        )
        return None

    def _basic_ack(self, channel: ServerChannel, m: BasicAck, command: Command) -> Method | None:
        _core(channel).basic_ack(m.delivery_tag, multiple=m.multiple)
        return None

    def _basic_nack(self, channel: ServerChannel, m: BasicNack, command: Command) -> Method | None:
        _core(channel).basic_nack(m.delivery_tag, multiple=m.multiple, requeue=m.requeue)
        return None

    def _basic_reject(
        self, channel: ServerChannel, m: BasicReject, command: Command
    ) -> Method | None:
        _core(channel).basic_reject(m.delivery_tag, requeue=m.requeue)
        return None

    def _basic_recover(
        self, channel: ServerChannel, m: BasicRecover, command: Command
    ) -> Method | None:
        _core(channel).basic_recover(requeue=m.requeue)
        return BasicRecoverOk()

    def _confirm_select(
        self, channel: ServerChannel, m: ConfirmSelect, command: Command
    ) -> Method | None:
        _core(channel).confirm_select()
        channel.select_confirms()
        return None if m.nowait else ConfirmSelectOk()


def _never() -> bool:
    return False


def _core(channel: ServerChannel) -> CoreChannel:
    """The channel's core channel (present while the channel is open)."""
    core = channel.core
    assert core is not None
    return core


def _misplaced(method: Method, number: int) -> HardError:
    """503 for a method on the wrong channel or one only servers send."""
    if number == 0:
        text = f"'{method.NAME}' is not allowed on channel 0"
    elif method.CLASS_ID == ConnectionClose.CLASS_ID:
        text = f"'{method.NAME}' is only allowed on channel 0, got it on channel {number}"
    else:
        text = f"'{method.NAME}' is not sent by clients"
    return HardError(COMMAND_INVALID, text, class_id=method.CLASS_ID, method_id=method.METHOD_ID)


def _parse_plain(response: bytes) -> tuple[str | None, str | None]:
    """Split a SASL PLAIN response ``authzid NUL user NUL password`` (RFC 4616)."""
    parts = response.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        return None, None
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        return None, None


_HANDLERS: Final[dict[type[Method], _Handler]] = {
    ChannelOpen: AMQPServerProtocol._channel_open,
    ChannelClose: AMQPServerProtocol._channel_close,
    ChannelCloseOk: AMQPServerProtocol._channel_close_ok,
    ChannelFlow: AMQPServerProtocol._channel_flow,
    ExchangeDeclare: AMQPServerProtocol._exchange_declare,
    ExchangeDelete: AMQPServerProtocol._exchange_delete,
    ExchangeBind: AMQPServerProtocol._exchange_bind,
    ExchangeUnbind: AMQPServerProtocol._exchange_unbind,
    QueueDeclare: AMQPServerProtocol._queue_declare,
    QueueBind: AMQPServerProtocol._queue_bind,
    QueueUnbind: AMQPServerProtocol._queue_unbind,
    QueuePurge: AMQPServerProtocol._queue_purge,
    QueueDelete: AMQPServerProtocol._queue_delete,
    BasicQos: AMQPServerProtocol._basic_qos,
    BasicConsume: AMQPServerProtocol._basic_consume,
    BasicCancel: AMQPServerProtocol._basic_cancel,
    BasicCancelOk: AMQPServerProtocol._basic_cancel_ok,
    BasicPublish: AMQPServerProtocol._basic_publish,
    BasicGet: AMQPServerProtocol._basic_get,
    BasicAck: AMQPServerProtocol._basic_ack,
    BasicNack: AMQPServerProtocol._basic_nack,
    BasicReject: AMQPServerProtocol._basic_reject,
    BasicRecover: AMQPServerProtocol._basic_recover,
    ConfirmSelect: AMQPServerProtocol._confirm_select,
}


class BrokerFactory(Factory):
    """Builds an :class:`AMQPServerProtocol` per connection to one broker core.

    It also owns output batching: protocols with pending output register
    here, and :meth:`flush` writes each with one ``writeSequence``.  That
    happens at the end of every ``dataReceived`` (so deliveries that client
    A's publish caused for client B go out when A's batch ends), after timer
    callbacks, and, for output made outside any batch (a service poking the
    core), on a ``callLater(0)`` scheduled once per batch.
    """

    log = Logger()

    def __init__(
        self,
        broker: CoreBroker,
        clock: IReactorTime,
        limits: ServerLimits | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.limits = limits if limits is not None else ServerLimits()
        #: Live connections, for management and shutdown.
        self.connections: set[AMQPServerProtocol] = set()
        #: Nesting depth of the batches running now; output is flushed when it returns to 0.
        self.batch_depth = 0
        #: Why publishers are blocked (disk alarm), None when they are not.
        self.blocked_reason: str | None = None
        #: Reading from publishing connections is paused (the store's backlog is high).
        self.flow_paused = False
        #: Live connections that have published: the ones flow control pauses.
        self.publishers: set[AMQPServerProtocol] = set()
        self._dirty: dict[AMQPServerProtocol, None] = {}
        self._flush_call: IDelayedCall | None = None
        self._awake_until = 0.0
        self._awake_call: IDelayedCall | None = None
        #: While this says True the reactor is left to sleep (see :meth:`stay_awake`).
        self.busy_poll_paused: Callable[[], bool] = _never

    def buildProtocol(self, addr: IAddress | None) -> AMQPServerProtocol:
        """Return the protocol for a new connection (its peer is read from the transport)."""
        return AMQPServerProtocol(self)

    def set_blocked(self, reason: str | None) -> None:
        """Block publishers (``connection.blocked`` with ``reason``) or unblock them (None).

        Sent to every open connection whose client asked for it, and to
        connections opened while blocked.  The core refuses the publishes
        that need the store meanwhile; this only tells clients.
        """
        self.blocked_reason = reason
        self.batch_depth += 1
        try:
            for protocol in list(self.connections):
                protocol.notify_blocked(reason)
        finally:
            self.batch_depth -= 1
            self.flush_if_idle()

    def set_flow_paused(self, paused: bool) -> None:
        """Stop (True) or resume (False) reading from every connection that has published.

        Called by the store adapter when the store's backlog crosses its
        high or low watermark; connections that never published (consumers)
        keep being read, so they can ack and drain.
        """
        if paused == self.flow_paused:
            return
        self.flow_paused = paused
        self.log.debug(
            "Publisher flow control: {action} reading from {count} publishing connections",
            action="pausing" if paused else "resuming",
            count=len(self.publishers),
        )
        for protocol in list(self.publishers):
            protocol.set_reading_paused(paused)

    def publisher_added(self, protocol: AMQPServerProtocol) -> None:
        """``protocol`` published for the first time: pause it now if flow control is on."""
        self.publishers.add(protocol)
        if self.flow_paused:
            protocol.set_reading_paused(True)

    def connection_made(self, protocol: AMQPServerProtocol) -> None:
        """Track a live connection."""
        self.connections.add(protocol)

    def connection_lost(self, protocol: AMQPServerProtocol) -> None:
        """Forget a connection that went away."""
        self.connections.discard(protocol)
        self.publishers.discard(protocol)
        self._dirty.pop(protocol, None)

    def mark_dirty(self, protocol: AMQPServerProtocol) -> None:
        """Note that ``protocol`` has output to write at the end of this batch."""
        self._dirty[protocol] = None
        if self.batch_depth == 0 and self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush_later)

    def flush_if_idle(self) -> None:
        """Flush unless a batch is still running (the outermost one flushes)."""
        if self.batch_depth == 0:
            self.flush()

    def flush(self) -> None:
        """Write every pending output, one ``writeSequence`` per connection; never raises."""
        dirty = self._dirty
        if not dirty:
            return
        now = self.clock.seconds()
        self.batch_depth += 1
        try:
            while dirty:
                protocol = next(iter(dirty))
                del dirty[protocol]
                try:
                    protocol.flush(now)
                except Exception:
                    self.log.failure("Writing to {peer} failed", peer=protocol.peer)
        finally:
            self.batch_depth -= 1

    def _flush_later(self) -> None:
        self._flush_call = None
        self.flush()

    def stay_awake(self) -> None:
        """Keep the reactor polling, not sleeping, for ``limits.busy_poll_seconds``.

        Called after each batch of input.  A peer in a request-reply
        exchange usually answers within a few hundred microseconds, and a
        process woken from sleep by that answer pays tens of microseconds
        for the wake-up (more on a VM, where an idle CPU halts): a sequential
        RPC round trip has two such wake-ups in the broker.  Scheduling a
        zero-delay call for that long keeps the reactor's poll non-blocking,
        at the price of that much CPU after the last input when the broker
        falls idle (what Erlang's scheduler busy-wait does for RabbitMQ).
        A busy broker never sleeps anyway and pays one call per reactor turn.
        Not while :attr:`busy_poll_paused` says so: the plugin points it at
        the store's writer, which needs the GIL a spinning reactor holds.
        """
        seconds = self.limits.busy_poll_seconds
        if seconds and not self.busy_poll_paused():
            self._awake_until = self.clock.seconds() + seconds
            if self._awake_call is None:
                self._awake_call = self.clock.callLater(0, self._keep_awake)

    def _keep_awake(self) -> None:
        # Bounded by the window, so a clock stepped back does not spin longer.
        left = self._awake_until - self.clock.seconds()
        if 0 < left <= self.limits.busy_poll_seconds and not self.busy_poll_paused():
            self._awake_call = self.clock.callLater(0, self._keep_awake)
        else:
            self._awake_call = None

    def close_all(
        self,
        reply_code: int = CONNECTION_FORCED,
        reply_text: str = "CONNECTION_FORCED - broker forced connection closure "
        "with reason 'shutdown'",
        *,
        drop: bool = False,
    ) -> None:
        """Close every connection with ``connection.close`` (broker shutdown).

        With ``drop`` the sockets are closed right after the frame is written
        instead of waiting for ``close-ok``, so no timer is left behind.
        """
        self.batch_depth += 1
        try:
            for protocol in list(self.connections):
                protocol.close_guarded(reply_code, reply_text, drop=drop)
        finally:
            self.batch_depth -= 1
            self.flush_if_idle()

    def stopFactory(self) -> None:
        """Cancel the pending flush and busy-poll calls, so a stopped server leaves none."""
        for name in ("_flush_call", "_awake_call"):
            call: IDelayedCall | None = getattr(self, name)
            setattr(self, name, None)
            if call is not None and call.active():
                call.cancel()


__all__ = [
    "LOGIN_REFUSED_TEXT",
    "LOOPBACK_USERS",
    "AMQPServerProtocol",
    "BrokerFactory",
    "describe_peer",
    "is_loopback",
]
