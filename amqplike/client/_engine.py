"""The sans-IO client engine shared by the blocking and the Twisted clients.

The engine owns the protocol state of one client connection and nothing
else: it never touches a socket, a clock or a reactor.  A driver feeds it
the bytes that arrived (:meth:`ClientEngine.receive_data`), writes out what
it produced (:meth:`ClientEngine.data_to_send`), calls
:meth:`ClientEngine.tick` at :meth:`ClientEngine.next_deadline` for
heartbeats, and acts on the returned events.  Time is always an argument.

What it does (see ``docs/protocol.md``):

* the handshake: protocol header, ``start-ok`` with SASL PLAIN, ``tune-ok``
  with the smaller of the server's and the client's limits, ``open``;
* channel numbering and per-channel matching of synchronous replies
  (``*-ok``) to requests, in order (AMQP 0-9-1 section 2.3.5: replies on a
  channel come in request order);
* deliveries, returns, publisher confirms (with the return that precedes an
  ack attached to it), broker-initiated ``basic.cancel``, ``channel.close``
  and ``connection.close`` (answered with ``close-ok``), blocked/unblocked;
* heartbeats: one is sent after ``h/2`` seconds of silence on our side, and
  the server is declared dead after ``2h`` seconds of silence on its side.
"""

from __future__ import annotations

import platform
import struct
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from amqplike import __version__
from amqplike.client.exceptions import (
    AMQPConnectionError,
    AMQPError,
    AMQPHeartbeatTimeout,
    ChannelClosedByBroker,
    ChannelClosedByClient,
    ChannelWrongStateError,
    ConnectionClosedByBroker,
    ConnectionClosedByClient,
    ConnectionWrongStateError,
    IncompatibleProtocolError,
    NoFreeChannels,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
    ReturnedMessage,
    StreamLostError,
)
from amqplike.client.parameters import ConnectionParameters
from amqplike.errors import (
    INTERNAL_ERROR,
    REPLY_SUCCESS,
    UNEXPECTED_FRAME,
)
from amqplike.errors import (
    AMQPError as WireError,
)
from amqplike.properties import EMPTY_PROPERTIES, BasicProperties
from amqplike.wire import (
    FRAME_HEARTBEAT,
    HEARTBEAT_FRAME,
    MIN_FRAME_MAX_BYTES,
    PROTOCOL_HEADER,
    CommandAssembler,
    FrameDecoder,
    encode_frame,
    encode_header,
    encode_method,
)
from amqplike.wire import methods as m
from amqplike.wire.frames import (
    FRAME_BODY,
    FRAME_END_BYTE,
    FRAME_HEADER,
    FRAME_METHOD,
    FRAME_OVERHEAD_BYTES,
)

_pack_frame_header: Final = struct.Struct(">BHI").pack

#: Largest body the client assembles; the server caps bodies far lower (16 MiB).
CLIENT_MAX_BODY_BYTES: Final = 1 << 30
#: How many encoded ``basic.publish`` method frames are cached by destination.
_PUBLISH_FRAME_CACHE_SIZE: Final = 1024

# Connection states.
AWAIT_START: Final = "await-start"
AWAIT_TUNE: Final = "await-tune"
AWAIT_OPEN_OK: Final = "await-open-ok"
OPEN: Final = "open"
CLOSING: Final = "closing"
CLOSED: Final = "closed"
INITIAL: Final = "initial"

# Channel states.
CH_OPENING: Final = "opening"
CH_OPEN: Final = "open"
CH_CLOSING: Final = "closing"

#: The synchronous replies each request waits for (AMQP 0-9-1's "synchronous request").
REPLIES: Final[dict[type[m.Method], tuple[type[m.Method], ...]]] = {
    m.ChannelOpen: (m.ChannelOpenOk,),
    m.ChannelFlow: (m.ChannelFlowOk,),
    m.ExchangeDeclare: (m.ExchangeDeclareOk,),
    m.ExchangeDelete: (m.ExchangeDeleteOk,),
    m.ExchangeBind: (m.ExchangeBindOk,),
    m.ExchangeUnbind: (m.ExchangeUnbindOk,),
    m.QueueDeclare: (m.QueueDeclareOk,),
    m.QueueBind: (m.QueueBindOk,),
    m.QueuePurge: (m.QueuePurgeOk,),
    m.QueueDelete: (m.QueueDeleteOk,),
    m.QueueUnbind: (m.QueueUnbindOk,),
    m.BasicQos: (m.BasicQosOk,),
    m.BasicConsume: (m.BasicConsumeOk,),
    m.BasicCancel: (m.BasicCancelOk,),
    m.BasicGet: (m.BasicGetOk, m.BasicGetEmpty),
    m.BasicRecover: (m.BasicRecoverOk,),
    m.ConfirmSelect: (m.ConfirmSelectOk,),
}


class MethodFrame:
    """A received method with its channel: the shape of ``pika.frame.Method``.

    Blocking calls such as ``queue_declare`` return one, so
    ``frame.method.queue`` works as in pika.
    """

    __slots__ = ("channel_number", "method")

    #: The frame type, as pika's frames carry it.
    frame_type: Final = FRAME_METHOD

    def __init__(self, channel_number: int, method: Any) -> None:
        self.channel_number = channel_number
        self.method = method

    def __repr__(self) -> str:
        return f"<MethodFrame channel={self.channel_number} method={self.method!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MethodFrame):
            return NotImplemented
        return (self.channel_number, self.method) == (other.channel_number, other.method)

    def __hash__(self) -> int:
        return hash((self.channel_number, self.method))


# --- events ---


class Event:
    """Base of what :class:`ClientEngine` reports to its driver."""

    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({fields})"


class ConnectionOpened(Event):
    """The handshake finished: channels may be opened."""

    __slots__ = ("server_properties",)

    def __init__(self, server_properties: Mapping[str, Any]) -> None:
        self.server_properties = server_properties


class Reply(Event):
    """The synchronous reply to the request that :meth:`ClientEngine.call` numbered ``token``."""

    __slots__ = ("body", "channel", "method", "properties", "token")

    def __init__(
        self,
        channel: int,
        token: int,
        method: m.Method,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self.channel = channel
        self.token = token
        self.method = method
        self.properties = properties
        self.body = body


class Delivery(Event):
    """A ``basic.deliver`` with its content."""

    __slots__ = ("body", "channel", "method", "properties")

    def __init__(
        self, channel: int, method: m.BasicDeliver, properties: BasicProperties, body: bytes
    ) -> None:
        self.channel = channel
        self.method = method
        self.properties = properties
        self.body = body


class Returned(Event):
    """A ``basic.return``: an unroutable mandatory message came back."""

    __slots__ = ("body", "channel", "method", "properties")

    def __init__(
        self, channel: int, method: m.BasicReturn, properties: BasicProperties, body: bytes
    ) -> None:
        self.channel = channel
        self.method = method
        self.properties = properties
        self.body = body


class Confirmed(Event):
    """Publisher confirms: ``delivery_tags`` were acked (``ack``) or nacked by the broker.

    ``returned`` is the message the broker returned just before confirming
    ``delivery_tag`` (the highest tag of this confirm), or ``None``.
    """

    __slots__ = ("ack", "channel", "delivery_tag", "delivery_tags", "method", "returned")

    def __init__(
        self,
        channel: int,
        delivery_tag: int,
        delivery_tags: list[int],
        ack: bool,
        returned: ReturnedMessage | None,
        method: m.BasicAck | m.BasicNack,
    ) -> None:
        self.channel = channel
        self.delivery_tag = delivery_tag
        self.delivery_tags = delivery_tags
        self.ack = ack
        self.returned = returned
        self.method = method


class ConsumerCancelledByBroker(Event):
    """The broker cancelled a consumer (its queue was deleted): a ``basic.cancel``."""

    __slots__ = ("channel", "method")

    def __init__(self, channel: int, method: m.BasicCancel) -> None:
        self.channel = channel
        self.method = method


class ChannelClosedEvent(Event):
    """A channel is closed; ``pending`` are the tokens of requests that will get no reply.

    ``error`` is ``ChannelClosedByBroker``, ``ChannelClosedByClient`` or,
    when the whole connection went down, the connection's error.
    """

    __slots__ = ("channel", "error", "pending")

    def __init__(self, channel: int, error: AMQPError, pending: tuple[int, ...]) -> None:
        self.channel = channel
        self.error = error
        self.pending = pending


class ConnectionClosedEvent(Event):
    """The connection is finished; the driver flushes what is left and drops the socket.

    Always preceded by a :class:`ChannelClosedEvent` for every channel that was open.
    """

    __slots__ = ("error",)

    def __init__(self, error: AMQPConnectionError) -> None:
        self.error = error


class Blocked(Event):
    """``connection.blocked``: the broker stopped reading publishes (resource alarm)."""

    __slots__ = ("method",)

    def __init__(self, method: m.ConnectionBlocked) -> None:
        self.method = method


class Unblocked(Event):
    """``connection.unblocked``: the broker reads publishes again."""

    __slots__ = ("method",)

    def __init__(self, method: m.ConnectionUnblocked) -> None:
        self.method = method


# --- per-channel state ---


class _Channel:
    """Protocol state of one channel."""

    __slots__ = (
        "close_code",
        "close_text",
        "confirm_low",
        "confirming",
        "number",
        "pending",
        "publish_seq",
        "returned",
        "state",
        "unconfirmed",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.state = CH_OPENING
        #: ``(token, accepted reply classes)`` for each request awaiting its reply.
        self.pending: deque[tuple[int, tuple[type[m.Method], ...]]] = deque()
        self.confirming = False
        self.publish_seq = 0
        self.unconfirmed: set[int] = set()
        #: Every tag below this one is confirmed.
        self.confirm_low = 1
        self.returned: ReturnedMessage | None = None
        self.close_code = REPLY_SUCCESS
        self.close_text = ""


def default_client_properties() -> dict[str, Any]:
    """Return the ``client_properties`` table sent in ``connection.start-ok``."""
    return {
        "product": "amqplike",
        "version": __version__,
        "platform": f"Python {platform.python_version()}",
        "information": "amqplike client",
        "capabilities": {
            "authentication_failure_close": True,
            "basic.nack": True,
            "connection.blocked": True,
            "consumer_cancel_notify": True,
            "publisher_confirms": True,
            "exchange_exchange_bindings": True,
        },
    }


def _negotiate_limit(server: int, client: int) -> int:
    """Pick a limit where 0 means "none": the smaller of the two non-zero values."""
    if server == 0:
        return client
    if client == 0:
        return server
    return min(server, client)


class ClientEngine:
    """The protocol state machine of one client connection (sans-IO).

    Call :meth:`start` once the transport is connected.  Methods that send
    raise ``ConnectionWrongStateError``/``ChannelWrongStateError`` when the
    connection or channel cannot take them; protocol errors from the server
    never raise: they become events.
    """

    def __init__(self, parameters: ConnectionParameters) -> None:
        self.parameters = parameters
        self.state = INITIAL
        #: ``connection.start``'s ``server_properties``, once received.
        self.server_properties: Mapping[str, Any] = {}
        #: Negotiated values, valid once open.
        self.channel_max = 0
        self.frame_max = MIN_FRAME_MAX_BYTES
        self.heartbeat = 0
        self.blocked = False
        self._decoder = FrameDecoder(MIN_FRAME_MAX_BYTES)
        self._assembler = CommandAssembler(max_body_bytes=CLIENT_MAX_BODY_BYTES)
        self._channels: dict[int, _Channel] = {}
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._next_token = 1
        self._last_sent = 0.0
        self._last_received = 0.0
        self._close_code = REPLY_SUCCESS
        self._close_text = ""
        self._publish_frames: dict[tuple[int, str, str, bool], bytes] = {}
        self._header_probe = b""

    # --- state queries ---

    @property
    def is_open(self) -> bool:
        """True once the handshake finished and until a close starts."""
        return self.state == OPEN

    @property
    def is_closed(self) -> bool:
        """True once the connection is finished (closed, failed or lost)."""
        return self.state == CLOSED

    @property
    def pending_output_bytes(self) -> int:
        """How many bytes :meth:`data_to_send` would return."""
        return self._out_bytes

    def channel_is_open(self, channel: int) -> bool:
        """True when ``channel`` is open (or opening) and not closing."""
        chan = self._channels.get(channel)
        return chan is not None and chan.state != CH_CLOSING and self.state == OPEN

    def unconfirmed_count(self, channel: int) -> int:
        """How many publishes on ``channel`` await a confirm."""
        chan = self._channels.get(channel)
        return len(chan.unconfirmed) if chan is not None else 0

    # --- driving ---

    def start(self, now: float) -> None:
        """Begin the handshake: queue the protocol header."""
        if self.state != INITIAL:
            raise ConnectionWrongStateError("the connection was already started")
        self.state = AWAIT_START
        self._last_sent = self._last_received = now
        self._write(PROTOCOL_HEADER)

    def data_to_send(self, now: float) -> bytes:
        """Return (and forget) every byte produced since the last call."""
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        self._last_sent = now
        return data

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Take bytes from the server; return the events they complete, in order."""
        events: list[Event] = []
        if self.state in (CLOSED, INITIAL) or not data:
            return events
        self._last_received = now
        if self.state == AWAIT_START and self._is_foreign_header(data):
            self._finish(
                IncompatibleProtocolError(
                    f"the server speaks another protocol version: {self._header_probe!r}"
                ),
                events,
            )
            return events
        try:
            for frame_type, channel, payload in self._decoder.feed(data):
                if frame_type == FRAME_HEARTBEAT:
                    continue
                command = self._assembler.feed(frame_type, channel, payload)
                if command is not None:
                    self._on_command(command.channel, command.method, command, events)
                    if self.state == CLOSED:
                        break
        except WireError as e:
            self._protocol_error(e.reply_code, e.reply_text, e.class_id, e.method_id, events)
        return events

    def connection_lost(self, reason: str = "") -> list[Event]:
        """The transport is gone; fail everything still waiting."""
        events: list[Event] = []
        if self.state == CLOSED:
            return events
        error: AMQPConnectionError
        if self.state == CLOSING:
            error = ConnectionClosedByClient(self._close_code, self._close_text)
        elif self.state in (AWAIT_START, AWAIT_TUNE, AWAIT_OPEN_OK, INITIAL):
            error = AMQPConnectionError(f"connection lost during the handshake {reason}".strip())
        else:
            error = StreamLostError(f"transport lost: {reason}" if reason else "transport lost")
        self._finish(error, events)
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called, or ``None`` without heartbeats."""
        h = self.heartbeat
        if h <= 0 or self.state not in (OPEN, CLOSING):
            return None
        return min(self._last_sent + h / 2, self._last_received + 2 * h)

    def tick(self, now: float) -> list[Event]:
        """Service heartbeats: queue one after ``h/2`` s of our silence, fail after ``2h`` of theirs."""
        events: list[Event] = []
        h = self.heartbeat
        if h <= 0 or self.state not in (OPEN, CLOSING):
            return events
        if now - self._last_received >= 2 * h:
            self._finish(
                AMQPHeartbeatTimeout(
                    f"no frame from the server for {now - self._last_received:.1f} s "
                    f"(heartbeat {h} s)"
                ),
                events,
            )
            return events
        if now - self._last_sent >= h / 2 and not self._out:
            self._write(HEARTBEAT_FRAME)
        return events

    # --- requests ---

    def open_channel(self, channel_number: int | None = None) -> tuple[int, int]:
        """Send ``channel.open``; return ``(channel number, token of the open-ok)``.

        Raises ``NoFreeChannels`` when every number is taken.
        """
        self._check_open()
        if channel_number is None:
            channel_number = self._free_channel()
        elif channel_number in self._channels or not 1 <= channel_number <= self.channel_max:
            raise ValueError(f"channel number {channel_number} is in use or out of range")
        chan = _Channel(channel_number)
        self._channels[channel_number] = chan
        token = self._request(chan, m.ChannelOpen())
        return channel_number, token

    def call(self, channel: int, method: m.Method) -> int:
        """Send a synchronous request; return the token its :class:`Reply` will carry."""
        return self._request(self._open_channel(channel), method)

    def send(self, channel: int, method: m.Method) -> None:
        """Send a method that has no reply (``basic.ack`` ...)."""
        self._open_channel(channel)
        self._write(encode_frame(FRAME_METHOD, channel, encode_method(method)))

    def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: BasicProperties | None = None,
        mandatory: bool = False,
    ) -> int:
        """Queue a ``basic.publish`` with its content.

        Returns the publish sequence number (the delivery tag the broker
        will confirm) in confirm mode, else 0.
        """
        chan = self._channels.get(channel)
        if chan is None or chan.state == CH_CLOSING or self.state != OPEN:
            chan = self._open_channel(channel)  # raises the right error
        key = (channel, exchange, routing_key, mandatory)
        method_frame = self._publish_frames.get(key)
        if method_frame is None:
            method_frame = encode_frame(
                FRAME_METHOD,
                channel,
                encode_method(m.BasicPublish(exchange, routing_key, mandatory, False)),
            )
            if len(self._publish_frames) >= _PUBLISH_FRAME_CACHE_SIZE:
                self._publish_frames.clear()
            self._publish_frames[key] = method_frame
        size = len(body)
        header = encode_header(size, properties or EMPTY_PROPERTIES)
        if 0 < size <= self.frame_max - FRAME_OVERHEAD_BYTES:
            # The common case, in one allocation: header frame then body frame.
            data = b"".join(
                (
                    method_frame,
                    _pack_frame_header(FRAME_HEADER, channel, len(header)),
                    header,
                    FRAME_END_BYTE,
                    _pack_frame_header(FRAME_BODY, channel, size),
                    body,
                    FRAME_END_BYTE,
                )
            )
        else:
            parts = [method_frame, encode_frame(FRAME_HEADER, channel, header)]
            chunk = self.frame_max - FRAME_OVERHEAD_BYTES
            view = memoryview(body)
            for start in range(0, size, chunk):
                parts.append(encode_frame(FRAME_BODY, channel, bytes(view[start : start + chunk])))
            data = b"".join(parts)
        self._out.append(data)
        self._out_bytes += len(data)
        if chan.confirming:
            chan.publish_seq += 1
            chan.unconfirmed.add(chan.publish_seq)
            return chan.publish_seq
        return 0

    def close_channel(
        self, channel: int, reply_code: int = REPLY_SUCCESS, reply_text: str = "Normal shutdown"
    ) -> None:
        """Send ``channel.close``; a :class:`ChannelClosedEvent` follows its ``close-ok``.

        From now on the channel ignores everything but ``close``/``close-ok``
        (AMQP 0-9-1 section 2.2.4 "channel.close").
        """
        chan = self._open_channel(channel)
        chan.state = CH_CLOSING
        chan.close_code, chan.close_text = reply_code, reply_text
        self._write(
            encode_frame(
                FRAME_METHOD, channel, encode_method(m.ChannelClose(reply_code, reply_text, 0, 0))
            )
        )

    def close(self, reply_code: int = REPLY_SUCCESS, reply_text: str = "Normal shutdown") -> None:
        """Send ``connection.close``; a :class:`ConnectionClosedEvent` follows its ``close-ok``."""
        self._check_open()
        self.state = CLOSING
        self._close_code, self._close_text = reply_code, reply_text
        self._write(
            encode_frame(
                FRAME_METHOD, 0, encode_method(m.ConnectionClose(reply_code, reply_text, 0, 0))
            )
        )

    def abort(self, error: AMQPConnectionError) -> list[Event]:
        """Give up on the connection without a close handshake (e.g. a handshake timeout)."""
        events: list[Event] = []
        if self.state != CLOSED:
            self._finish(error, events)
        return events

    # --- internals ---

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)

    def _write_method(self, channel: int, method: m.Method) -> None:
        self._write(encode_frame(FRAME_METHOD, channel, encode_method(method)))

    def _check_open(self) -> None:
        if self.state != OPEN:
            raise ConnectionWrongStateError(f"the connection is {self.state}, not open")

    def _open_channel(self, channel: int) -> _Channel:
        self._check_open()
        chan = self._channels.get(channel)
        if chan is None or chan.state == CH_CLOSING:
            raise ChannelWrongStateError(f"channel {channel} is closed or closing")
        return chan

    def _free_channel(self) -> int:
        for number in range(1, self.channel_max + 1):
            if number not in self._channels:
                return number
        raise NoFreeChannels(f"all {self.channel_max} channels are in use")

    def _request(self, chan: _Channel, method: m.Method) -> int:
        replies = REPLIES.get(type(method))
        if replies is None:
            raise ValueError(f"{method.NAME} is not a synchronous request")
        token = self._next_token
        self._next_token += 1
        chan.pending.append((token, replies))
        if type(method) is m.ConfirmSelect:
            # The broker numbers publishes from the select on, in order.
            chan.confirming = True
        self._write_method(chan.number, method)
        return token

    def _is_foreign_header(self, data: bytes) -> bool:
        # A server that does not speak our version writes its own protocol
        # header ("AMQP..." or "AMQPLIKE...") and closes (docs/protocol.md
        # section 1); no frame type starts with "A".
        if self._decoder.buffered_bytes or data[:1] != b"A":
            return False
        self._header_probe = data[: len(PROTOCOL_HEADER)]
        return True

    def _protocol_error(
        self, code: int, text: str, class_id: int, method_id: int, events: list[Event]
    ) -> None:
        """The server broke the protocol: say why with ``connection.close`` and give up."""
        if self.state not in (CLOSED, INITIAL):
            self._write_method(0, m.ConnectionClose(code, text[:255], class_id, method_id))
            self._finish(AMQPConnectionError(f"protocol error from the server: ({code}) {text}"), events)

    def _finish(self, error: AMQPConnectionError, events: list[Event]) -> None:
        self.state = CLOSED
        for number, chan in sorted(self._channels.items()):
            events.append(
                ChannelClosedEvent(number, error, tuple(token for token, _ in chan.pending))
            )
        self._channels.clear()
        events.append(ConnectionClosedEvent(error))

    def _on_command(self, channel: int, method: m.Method, command: Any, events: list[Event]) -> None:
        if channel == 0:
            self._on_connection_method(method, events)
            return
        if self.state != OPEN:
            # Closing: only connection.close/close-ok matter now.
            return
        chan = self._channels.get(channel)
        if chan is None:
            self._protocol_error(
                UNEXPECTED_FRAME, f"{method.NAME} on channel {channel}, which is not open",
                method.CLASS_ID, method.METHOD_ID, events,
            )
            return
        kind = type(method)
        if chan.state == CH_CLOSING:
            if kind is m.ChannelCloseOk:
                self._channel_closed(
                    chan, ChannelClosedByClient(chan.close_code, chan.close_text), events
                )
            elif kind is m.ChannelClose:
                assert isinstance(method, m.ChannelClose)
                self._write_method(channel, m.ChannelCloseOk())
                self._channel_closed(
                    chan, ChannelClosedByBroker(method.reply_code, method.reply_text), events
                )
            return
        if kind is m.BasicDeliver:
            events.append(Delivery(channel, method, command.properties, command.body))  # type: ignore[arg-type]
            return
        pending = chan.pending
        if pending and kind in pending[0][1]:
            token, _ = pending.popleft()
            if kind is m.ChannelOpenOk:
                chan.state = CH_OPEN
            events.append(Reply(channel, token, method, command.properties, command.body))
        elif kind is m.BasicAck or kind is m.BasicNack:
            self._on_confirm(chan, method, events)  # type: ignore[arg-type]
        elif kind is m.BasicReturn:
            assert isinstance(method, m.BasicReturn)
            if chan.confirming:
                chan.returned = ReturnedMessage(method, command.properties, command.body)
            events.append(Returned(channel, method, command.properties, command.body))
        elif kind is m.ChannelClose:
            assert isinstance(method, m.ChannelClose)
            self._write_method(channel, m.ChannelCloseOk())
            self._channel_closed(
                chan, ChannelClosedByBroker(method.reply_code, method.reply_text), events
            )
        elif kind is m.BasicCancel:
            assert isinstance(method, m.BasicCancel)
            events.append(ConsumerCancelledByBroker(channel, method))
        elif kind is m.ChannelFlow:
            assert isinstance(method, m.ChannelFlow)
            self._write_method(channel, m.ChannelFlowOk(method.active))
        else:
            self._protocol_error(
                UNEXPECTED_FRAME,
                f"unexpected {method.NAME} on channel {channel}",
                method.CLASS_ID,
                method.METHOD_ID,
                events,
            )

    def _on_confirm(
        self, chan: _Channel, method: m.BasicAck | m.BasicNack, events: list[Event]
    ) -> None:
        tag = method.delivery_tag
        unconfirmed = chan.unconfirmed
        if method.multiple:
            tags = [t for t in range(chan.confirm_low, tag + 1) if t in unconfirmed]
            unconfirmed.difference_update(tags)
            if tag >= chan.confirm_low:
                chan.confirm_low = tag + 1
        elif tag in unconfirmed:
            tags = [tag]
            unconfirmed.discard(tag)
        else:
            tags = []
        while chan.confirm_low <= chan.publish_seq and chan.confirm_low not in unconfirmed:
            chan.confirm_low += 1
        returned, chan.returned = chan.returned, None
        events.append(
            Confirmed(chan.number, tag, tags, type(method) is m.BasicAck, returned, method)
        )

    def _channel_closed(self, chan: _Channel, error: AMQPError, events: list[Event]) -> None:
        del self._channels[chan.number]
        self._assembler.discard(chan.number)
        events.append(
            ChannelClosedEvent(chan.number, error, tuple(token for token, _ in chan.pending))
        )

    def _on_connection_method(self, method: m.Method, events: list[Event]) -> None:
        kind = type(method)
        state = self.state
        if kind is m.ConnectionClose:
            assert isinstance(method, m.ConnectionClose)
            self._write_method(0, m.ConnectionCloseOk())
            code, text = method.reply_code, method.reply_text
            error: AMQPConnectionError
            if state == CLOSING:
                error = ConnectionClosedByClient(self._close_code, self._close_text)
            elif state == AWAIT_TUNE:
                error = ProbableAuthenticationError(code, text)
            elif state == AWAIT_OPEN_OK:
                error = ProbableAccessDeniedError(code, text)
            else:
                error = ConnectionClosedByBroker(code, text)
            self._finish(error, events)
        elif kind is m.ConnectionCloseOk:
            if state == CLOSING:
                self._finish(ConnectionClosedByClient(self._close_code, self._close_text), events)
        elif state == CLOSING:
            return
        elif kind is m.ConnectionStart and state == AWAIT_START:
            assert isinstance(method, m.ConnectionStart)
            self._on_start(method, events)
        elif kind is m.ConnectionTune and state == AWAIT_TUNE:
            assert isinstance(method, m.ConnectionTune)
            self._on_tune(method)
        elif kind is m.ConnectionOpenOk and state == AWAIT_OPEN_OK:
            self.state = OPEN
            events.append(ConnectionOpened(self.server_properties))
        elif kind is m.ConnectionBlocked and state == OPEN:
            assert isinstance(method, m.ConnectionBlocked)
            self.blocked = True
            events.append(Blocked(method))
        elif kind is m.ConnectionUnblocked and state == OPEN:
            assert isinstance(method, m.ConnectionUnblocked)
            self.blocked = False
            events.append(Unblocked(method))
        else:
            self._protocol_error(
                UNEXPECTED_FRAME,
                f"unexpected {method.NAME} while {state}",
                method.CLASS_ID,
                method.METHOD_ID,
                events,
            )

    def _on_start(self, method: m.ConnectionStart, events: list[Event]) -> None:
        self.server_properties = method.server_properties
        if "PLAIN" not in method.mechanisms.split():
            self._protocol_error(
                INTERNAL_ERROR, "no common SASL mechanism (the client offers PLAIN)",
                method.CLASS_ID, method.METHOD_ID, events,
            )
            return
        params = self.parameters
        properties = default_client_properties()
        if params.client_properties:
            properties.update(params.client_properties)
        self.state = AWAIT_TUNE
        self._write_method(
            0,
            m.ConnectionStartOk(
                properties, "PLAIN", params.credentials.response(), params.locale
            ),
        )

    def _on_tune(self, method: m.ConnectionTune) -> None:
        params = self.parameters
        self.channel_max = _negotiate_limit(method.channel_max, params.channel_max) or 65535
        frame_max = _negotiate_limit(method.frame_max, params.frame_max) or params.frame_max
        self.frame_max = max(frame_max, MIN_FRAME_MAX_BYTES)
        if params.heartbeat is None:
            self.heartbeat = method.heartbeat
        else:
            # At most the server's value (docs/protocol.md section 6); 0 disables.
            self.heartbeat = min(method.heartbeat, params.heartbeat)
        self._decoder.frame_max = self.frame_max
        self.state = AWAIT_OPEN_OK
        self._write_method(0, m.ConnectionTuneOk(self.channel_max, self.frame_max, self.heartbeat))
        self._write_method(0, m.ConnectionOpen(params.virtual_host))


__all__ = [
    "REPLIES",
    "Blocked",
    "ChannelClosedEvent",
    "ClientEngine",
    "Confirmed",
    "ConnectionClosedEvent",
    "ConnectionOpened",
    "ConsumerCancelledByBroker",
    "Delivery",
    "Event",
    "MethodFrame",
    "Reply",
    "Returned",
    "Unblocked",
    "default_client_properties",
]
