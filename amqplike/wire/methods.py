"""The protocol's methods: one frozen class per AMQP 0-9-1 method we speak.

A method travels in a METHOD frame as a CBOR array
``[class_id, method_id, field1, field2, ...]`` with the fields in the order
of the class's ``FIELDS``.  Decoding checks every field's type and range
against that schema, so the broker never sees a value of the wrong type.
Field names follow pika's keyword arguments (``global_`` for ``global``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from attrs import field, frozen

from amqplike.errors import COMMAND_INVALID, HardError
from amqplike.wire.values import (
    BOOL,
    BYTES,
    CHECKERS,
    LONG,
    LONGLONG,
    LONGSTR,
    OCTET,
    SHORT,
    SHORTSTR,
    TABLE,
    check_field,
    dumps,
    loads,
    syntax_error,
)

#: Every known method class by ``(class_id, method_id)``.
METHODS: dict[tuple[int, int], type[Method]] = {}


@frozen(slots=True)
class Method:
    """Base of all method classes; subclasses set the class variables below."""

    #: AMQP's dotted name, e.g. ``"basic.publish"``.
    NAME: ClassVar[str] = ""
    CLASS_ID: ClassVar[int] = 0
    METHOD_ID: ClassVar[int] = 0
    #: True for methods followed by a content header and body frames.
    HAS_CONTENT: ClassVar[bool] = False
    #: ``(field name, field kind)`` in wire order.
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The checking function of each field, in wire order (set by registration).
    CHECKS: ClassVar[tuple[Callable[[Any], bool], ...]] = ()

    def to_fields(self) -> list[Any]:
        """Return the field values in wire order."""
        return [getattr(self, name) for name, _ in self.FIELDS]

    @classmethod
    def from_fields(cls, values: list[Any]) -> Method:
        """Build the method from decoded wire values, checking each one.

        Raises ``HardError(502)`` for a wrong count, type or range.
        """
        checks = cls.CHECKS
        if len(values) != len(checks):
            raise syntax_error(f"{cls.NAME} takes {len(checks)} fields, got {len(values)}")
        for check, value in zip(checks, values):
            if not check(value):
                for (name, kind), bad in zip(cls.FIELDS, values):
                    if not check_field(kind, bad):
                        raise syntax_error(
                            f"{cls.NAME}: field '{name}' must be a {kind}, got {bad!r:.80}"
                        )
        return cls(*values)


def _register(cls: type[Method]) -> type[Method]:
    cls.CHECKS = tuple(CHECKERS[kind] for _, kind in cls.FIELDS)
    METHODS[(cls.CLASS_ID, cls.METHOD_ID)] = cls
    return cls


def encode_method(method: Method) -> bytes:
    """Return the CBOR payload of a METHOD frame carrying ``method``."""
    return dumps([method.CLASS_ID, method.METHOD_ID, *method.to_fields()])


def decode_method(payload: bytes) -> Method:
    """Decode a METHOD frame's payload.

    Raises ``HardError`` 501 for invalid CBOR, 502 for a payload that is not
    ``[class_id, method_id, fields...]`` or has wrong fields, and 503
    (COMMAND_INVALID) for a method this protocol does not have.
    """
    items = loads(payload)
    if type(items) is not list or len(items) < 2:
        raise syntax_error("method payload must be an array [class_id, method_id, fields...]")
    class_id, method_id = items[0], items[1]
    if type(class_id) is not int or type(method_id) is not int:
        raise syntax_error("class_id and method_id must be integers")
    cls = METHODS.get((class_id, method_id))
    if cls is None:
        raise HardError(COMMAND_INVALID, f"unknown method {class_id}.{method_id}")
    try:
        return cls.from_fields(items[2:])
    except HardError as e:
        e.class_id, e.method_id = class_id, method_id
        raise


# --- connection (class 10) ---


@_register
@frozen(slots=True)
class ConnectionStart(Method):
    """``connection.start``: Server's opening: protocol version, server properties, SASL mechanisms."""

    NAME: ClassVar[str] = "connection.start"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 10
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("version_major", OCTET),
        ("version_minor", OCTET),
        ("server_properties", TABLE),
        ("mechanisms", LONGSTR),
        ("locales", LONGSTR),
    )

    version_major: int = 0
    version_minor: int = 1
    server_properties: dict[str, Any] = field(factory=dict)
    mechanisms: str = "PLAIN"
    locales: str = "en_US"


@_register
@frozen(slots=True)
class ConnectionStartOk(Method):
    """``connection.start-ok``: Client's credentials: for PLAIN, ``response`` is NUL, user, NUL, password."""

    NAME: ClassVar[str] = "connection.start-ok"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 11
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("client_properties", TABLE),
        ("mechanism", SHORTSTR),
        ("response", BYTES),
        ("locale", SHORTSTR),
    )

    client_properties: dict[str, Any] = field(factory=dict)
    mechanism: str = "PLAIN"
    response: bytes = b""
    locale: str = "en_US"


@_register
@frozen(slots=True)
class ConnectionTune(Method):
    """``connection.tune``: Server's proposed limits; 0 means no limit (heartbeat: disabled)."""

    NAME: ClassVar[str] = "connection.tune"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 30
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("channel_max", SHORT),
        ("frame_max", LONG),
        ("heartbeat", SHORT),
    )

    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0


@_register
@frozen(slots=True)
class ConnectionTuneOk(Method):
    """``connection.tune-ok``: Client's accepted limits, each at most the server's proposal."""

    NAME: ClassVar[str] = "connection.tune-ok"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 31
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("channel_max", SHORT),
        ("frame_max", LONG),
        ("heartbeat", SHORT),
    )

    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0


@_register
@frozen(slots=True)
class ConnectionOpen(Method):
    """``connection.open``: Open the connection to a virtual host."""

    NAME: ClassVar[str] = "connection.open"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 40
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("virtual_host", SHORTSTR),)

    virtual_host: str = "/"


@_register
@frozen(slots=True)
class ConnectionOpenOk(Method):
    """``connection.open-ok``: The connection is ready for channels."""

    NAME: ClassVar[str] = "connection.open-ok"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 41
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ConnectionClose(Method):
    """``connection.close``: Close the connection, giving the reason and the offending method's ids."""

    NAME: ClassVar[str] = "connection.close"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 50
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reply_code", SHORT),
        ("reply_text", SHORTSTR),
        ("class_id", SHORT),
        ("method_id", SHORT),
    )

    reply_code: int = 200
    reply_text: str = ""
    class_id: int = 0
    method_id: int = 0


@_register
@frozen(slots=True)
class ConnectionCloseOk(Method):
    """``connection.close-ok``: Confirm a ``connection.close``; the sender then drops the socket."""

    NAME: ClassVar[str] = "connection.close-ok"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 51
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ConnectionBlocked(Method):
    """``connection.blocked``: The server stopped reading publishes (memory or disk alarm)."""

    NAME: ClassVar[str] = "connection.blocked"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 60
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("reason", SHORTSTR),)

    reason: str = ""


@_register
@frozen(slots=True)
class ConnectionUnblocked(Method):
    """``connection.unblocked``: The server reads publishes again."""

    NAME: ClassVar[str] = "connection.unblocked"
    CLASS_ID: ClassVar[int] = 10
    METHOD_ID: ClassVar[int] = 61
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


# --- channel (class 20) ---


@_register
@frozen(slots=True)
class ChannelOpen(Method):
    """``channel.open``: Open a channel."""

    NAME: ClassVar[str] = "channel.open"
    CLASS_ID: ClassVar[int] = 20
    METHOD_ID: ClassVar[int] = 10
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ChannelOpenOk(Method):
    """``channel.open-ok``: The channel is open."""

    NAME: ClassVar[str] = "channel.open-ok"
    CLASS_ID: ClassVar[int] = 20
    METHOD_ID: ClassVar[int] = 11
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ChannelFlow(Method):
    """``channel.flow``: Ask the peer to pause (False) or resume (True) sending content."""

    NAME: ClassVar[str] = "channel.flow"
    CLASS_ID: ClassVar[int] = 20
    METHOD_ID: ClassVar[int] = 20
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("active", BOOL),)

    active: bool = True


@_register
@frozen(slots=True)
class ChannelFlowOk(Method):
    """``channel.flow-ok``: Confirm a ``channel.flow``."""

    NAME: ClassVar[str] = "channel.flow-ok"
    CLASS_ID: ClassVar[int] = 20
    METHOD_ID: ClassVar[int] = 21
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("active", BOOL),)

    active: bool = True


@_register
@frozen(slots=True)
class ChannelClose(Method):
    """``channel.close``: Close the channel, giving the reason and the offending method's ids."""

    NAME: ClassVar[str] = "channel.close"
    CLASS_ID: ClassVar[int] = 20
    METHOD_ID: ClassVar[int] = 40
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reply_code", SHORT),
        ("reply_text", SHORTSTR),
        ("class_id", SHORT),
        ("method_id", SHORT),
    )

    reply_code: int = 200
    reply_text: str = ""
    class_id: int = 0
    method_id: int = 0


@_register
@frozen(slots=True)
class ChannelCloseOk(Method):
    """``channel.close-ok``: Confirm a ``channel.close``."""

    NAME: ClassVar[str] = "channel.close-ok"
    CLASS_ID: ClassVar[int] = 20
    METHOD_ID: ClassVar[int] = 41
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


# --- exchange (class 40) ---


@_register
@frozen(slots=True)
class ExchangeDeclare(Method):
    """``exchange.declare``: Create an exchange, or check that it exists with the same settings."""

    NAME: ClassVar[str] = "exchange.declare"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 10
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("exchange", SHORTSTR),
        ("type", SHORTSTR),
        ("passive", BOOL),
        ("durable", BOOL),
        ("auto_delete", BOOL),
        ("internal", BOOL),
        ("nowait", BOOL),
        ("arguments", TABLE),
    )

    exchange: str
    type: str = "direct"
    passive: bool = False
    durable: bool = False
    auto_delete: bool = False
    internal: bool = False
    nowait: bool = False
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class ExchangeDeclareOk(Method):
    """``exchange.declare-ok``: The exchange exists."""

    NAME: ClassVar[str] = "exchange.declare-ok"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 11
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ExchangeDelete(Method):
    """``exchange.delete``: Delete an exchange and its bindings."""

    NAME: ClassVar[str] = "exchange.delete"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 20
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("exchange", SHORTSTR),
        ("if_unused", BOOL),
        ("nowait", BOOL),
    )

    exchange: str
    if_unused: bool = False
    nowait: bool = False


@_register
@frozen(slots=True)
class ExchangeDeleteOk(Method):
    """``exchange.delete-ok``: The exchange is gone."""

    NAME: ClassVar[str] = "exchange.delete-ok"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 21
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ExchangeBind(Method):
    """``exchange.bind``: Bind an exchange to another exchange."""

    NAME: ClassVar[str] = "exchange.bind"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 30
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("destination", SHORTSTR),
        ("source", SHORTSTR),
        ("routing_key", SHORTSTR),
        ("nowait", BOOL),
        ("arguments", TABLE),
    )

    destination: str
    source: str
    routing_key: str = ""
    nowait: bool = False
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class ExchangeBindOk(Method):
    """``exchange.bind-ok``: The exchange binding exists."""

    NAME: ClassVar[str] = "exchange.bind-ok"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 31
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class ExchangeUnbind(Method):
    """``exchange.unbind``: Remove an exchange-to-exchange binding."""

    NAME: ClassVar[str] = "exchange.unbind"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 40
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("destination", SHORTSTR),
        ("source", SHORTSTR),
        ("routing_key", SHORTSTR),
        ("nowait", BOOL),
        ("arguments", TABLE),
    )

    destination: str
    source: str
    routing_key: str = ""
    nowait: bool = False
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class ExchangeUnbindOk(Method):
    """``exchange.unbind-ok``: The exchange binding is gone."""

    NAME: ClassVar[str] = "exchange.unbind-ok"
    CLASS_ID: ClassVar[int] = 40
    METHOD_ID: ClassVar[int] = 51
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


# --- queue (class 50) ---


@_register
@frozen(slots=True)
class QueueDeclare(Method):
    """``queue.declare``: Create a queue (server-named when ``queue`` is empty), or check it."""

    NAME: ClassVar[str] = "queue.declare"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 10
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("passive", BOOL),
        ("durable", BOOL),
        ("exclusive", BOOL),
        ("auto_delete", BOOL),
        ("nowait", BOOL),
        ("arguments", TABLE),
    )

    queue: str = ""
    passive: bool = False
    durable: bool = False
    exclusive: bool = False
    auto_delete: bool = False
    nowait: bool = False
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class QueueDeclareOk(Method):
    """``queue.declare-ok``: The queue's name and its ready-message and consumer counts."""

    NAME: ClassVar[str] = "queue.declare-ok"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 11
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("message_count", LONG),
        ("consumer_count", LONG),
    )

    queue: str
    message_count: int = 0
    consumer_count: int = 0


@_register
@frozen(slots=True)
class QueueBind(Method):
    """``queue.bind``: Bind a queue to an exchange."""

    NAME: ClassVar[str] = "queue.bind"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 20
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("exchange", SHORTSTR),
        ("routing_key", SHORTSTR),
        ("nowait", BOOL),
        ("arguments", TABLE),
    )

    queue: str
    exchange: str
    routing_key: str = ""
    nowait: bool = False
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class QueueBindOk(Method):
    """``queue.bind-ok``: The binding exists."""

    NAME: ClassVar[str] = "queue.bind-ok"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 21
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class QueuePurge(Method):
    """``queue.purge``: Remove a queue's ready messages."""

    NAME: ClassVar[str] = "queue.purge"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 30
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("nowait", BOOL),
    )

    queue: str
    nowait: bool = False


@_register
@frozen(slots=True)
class QueuePurgeOk(Method):
    """``queue.purge-ok``: How many messages were purged."""

    NAME: ClassVar[str] = "queue.purge-ok"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 31
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("message_count", LONG),)

    message_count: int = 0


@_register
@frozen(slots=True)
class QueueDelete(Method):
    """``queue.delete``: Delete a queue."""

    NAME: ClassVar[str] = "queue.delete"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 40
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("if_unused", BOOL),
        ("if_empty", BOOL),
        ("nowait", BOOL),
    )

    queue: str
    if_unused: bool = False
    if_empty: bool = False
    nowait: bool = False


@_register
@frozen(slots=True)
class QueueDeleteOk(Method):
    """``queue.delete-ok``: How many messages the deleted queue held."""

    NAME: ClassVar[str] = "queue.delete-ok"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 41
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("message_count", LONG),)

    message_count: int = 0


@_register
@frozen(slots=True)
class QueueUnbind(Method):
    """``queue.unbind``: Remove a queue binding."""

    NAME: ClassVar[str] = "queue.unbind"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 50
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("exchange", SHORTSTR),
        ("routing_key", SHORTSTR),
        ("arguments", TABLE),
    )

    queue: str
    exchange: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class QueueUnbindOk(Method):
    """``queue.unbind-ok``: The binding is gone."""

    NAME: ClassVar[str] = "queue.unbind-ok"
    CLASS_ID: ClassVar[int] = 50
    METHOD_ID: ClassVar[int] = 51
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


# --- basic (class 60) ---


@_register
@frozen(slots=True)
class BasicQos(Method):
    """``basic.qos``: Limit unacknowledged deliveries per consumer, or per channel when ``global_``."""

    NAME: ClassVar[str] = "basic.qos"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 10
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("prefetch_size", LONG),
        ("prefetch_count", SHORT),
        ("global_", BOOL),
    )

    prefetch_size: int = 0
    prefetch_count: int = 0
    global_: bool = False


@_register
@frozen(slots=True)
class BasicQosOk(Method):
    """``basic.qos-ok``: The limit is in force."""

    NAME: ClassVar[str] = "basic.qos-ok"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 11
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class BasicConsume(Method):
    """``basic.consume``: Start a consumer; deliveries follow as ``basic.deliver``."""

    NAME: ClassVar[str] = "basic.consume"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 20
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("consumer_tag", SHORTSTR),
        ("no_local", BOOL),
        ("no_ack", BOOL),
        ("exclusive", BOOL),
        ("nowait", BOOL),
        ("arguments", TABLE),
    )

    queue: str = ""
    consumer_tag: str = ""
    no_local: bool = False
    no_ack: bool = False
    exclusive: bool = False
    nowait: bool = False
    arguments: dict[str, Any] = field(factory=dict)


@_register
@frozen(slots=True)
class BasicConsumeOk(Method):
    """``basic.consume-ok``: The consumer's tag (server-named when none was given)."""

    NAME: ClassVar[str] = "basic.consume-ok"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 21
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("consumer_tag", SHORTSTR),)

    consumer_tag: str


@_register
@frozen(slots=True)
class BasicCancel(Method):
    """``basic.cancel``: Stop a consumer; the server also sends it when the queue is deleted."""

    NAME: ClassVar[str] = "basic.cancel"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 30
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("consumer_tag", SHORTSTR),
        ("nowait", BOOL),
    )

    consumer_tag: str
    nowait: bool = False


@_register
@frozen(slots=True)
class BasicCancelOk(Method):
    """``basic.cancel-ok``: The consumer is stopped."""

    NAME: ClassVar[str] = "basic.cancel-ok"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 31
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("consumer_tag", SHORTSTR),)

    consumer_tag: str


@_register
@frozen(slots=True)
class BasicPublish(Method):
    """``basic.publish``: Publish a message (content follows)."""

    NAME: ClassVar[str] = "basic.publish"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 40
    HAS_CONTENT: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("exchange", SHORTSTR),
        ("routing_key", SHORTSTR),
        ("mandatory", BOOL),
        ("immediate", BOOL),
    )

    exchange: str = ""
    routing_key: str = ""
    mandatory: bool = False
    immediate: bool = False


@_register
@frozen(slots=True)
class BasicReturn(Method):
    """``basic.return``: Return an unroutable mandatory message (content follows)."""

    NAME: ClassVar[str] = "basic.return"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 50
    HAS_CONTENT: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reply_code", SHORT),
        ("reply_text", SHORTSTR),
        ("exchange", SHORTSTR),
        ("routing_key", SHORTSTR),
    )

    reply_code: int = 312
    reply_text: str = "NO_ROUTE"
    exchange: str = ""
    routing_key: str = ""


@_register
@frozen(slots=True)
class BasicDeliver(Method):
    """``basic.deliver``: Push a message to a consumer (content follows)."""

    NAME: ClassVar[str] = "basic.deliver"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 60
    HAS_CONTENT: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("consumer_tag", SHORTSTR),
        ("delivery_tag", LONGLONG),
        ("redelivered", BOOL),
        ("exchange", SHORTSTR),
        ("routing_key", SHORTSTR),
    )

    consumer_tag: str
    delivery_tag: int
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""


@_register
@frozen(slots=True)
class BasicGet(Method):
    """``basic.get``: Fetch one message synchronously."""

    NAME: ClassVar[str] = "basic.get"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 70
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("queue", SHORTSTR),
        ("no_ack", BOOL),
    )

    queue: str = ""
    no_ack: bool = False


@_register
@frozen(slots=True)
class BasicGetOk(Method):
    """``basic.get-ok``: The fetched message (content follows)."""

    NAME: ClassVar[str] = "basic.get-ok"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 71
    HAS_CONTENT: ClassVar[bool] = True
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("delivery_tag", LONGLONG),
        ("redelivered", BOOL),
        ("exchange", SHORTSTR),
        ("routing_key", SHORTSTR),
        ("message_count", LONG),
    )

    delivery_tag: int
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""
    message_count: int = 0


@_register
@frozen(slots=True)
class BasicGetEmpty(Method):
    """``basic.get-empty``: The queue had no ready message."""

    NAME: ClassVar[str] = "basic.get-empty"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 72
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class BasicAck(Method):
    """``basic.ack``: Acknowledge one delivery, or all up to it with ``multiple``; from the server, a publisher confirm."""

    NAME: ClassVar[str] = "basic.ack"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 80
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("delivery_tag", LONGLONG),
        ("multiple", BOOL),
    )

    delivery_tag: int = 0
    multiple: bool = False


@_register
@frozen(slots=True)
class BasicReject(Method):
    """``basic.reject``: Reject one delivery, requeueing or discarding it."""

    NAME: ClassVar[str] = "basic.reject"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 90
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("delivery_tag", LONGLONG),
        ("requeue", BOOL),
    )

    delivery_tag: int
    requeue: bool = True


@_register
@frozen(slots=True)
class BasicRecover(Method):
    """``basic.recover``: Redeliver every unacknowledged delivery of the channel."""

    NAME: ClassVar[str] = "basic.recover"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 110
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("requeue", BOOL),)

    requeue: bool = True


@_register
@frozen(slots=True)
class BasicRecoverOk(Method):
    """``basic.recover-ok``: The recovery is done."""

    NAME: ClassVar[str] = "basic.recover-ok"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 111
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


@_register
@frozen(slots=True)
class BasicNack(Method):
    """``basic.nack``: Reject one or many deliveries; from the server, a negative publisher confirm."""

    NAME: ClassVar[str] = "basic.nack"
    CLASS_ID: ClassVar[int] = 60
    METHOD_ID: ClassVar[int] = 120
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("delivery_tag", LONGLONG),
        ("multiple", BOOL),
        ("requeue", BOOL),
    )

    delivery_tag: int = 0
    multiple: bool = False
    requeue: bool = True


# --- confirm (class 85) ---


@_register
@frozen(slots=True)
class ConfirmSelect(Method):
    """``confirm.select``: Put the channel in publisher-confirm mode."""

    NAME: ClassVar[str] = "confirm.select"
    CLASS_ID: ClassVar[int] = 85
    METHOD_ID: ClassVar[int] = 10
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (("nowait", BOOL),)

    nowait: bool = False


@_register
@frozen(slots=True)
class ConfirmSelectOk(Method):
    """``confirm.select-ok``: The channel is in confirm mode."""

    NAME: ClassVar[str] = "confirm.select-ok"
    CLASS_ID: ClassVar[int] = 85
    METHOD_ID: ClassVar[int] = 11
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()


__all__ = [
    "METHODS",
    "BasicAck",
    "BasicCancel",
    "BasicCancelOk",
    "BasicConsume",
    "BasicConsumeOk",
    "BasicDeliver",
    "BasicGet",
    "BasicGetEmpty",
    "BasicGetOk",
    "BasicNack",
    "BasicPublish",
    "BasicQos",
    "BasicQosOk",
    "BasicRecover",
    "BasicRecoverOk",
    "BasicReject",
    "BasicReturn",
    "ChannelClose",
    "ChannelCloseOk",
    "ChannelFlow",
    "ChannelFlowOk",
    "ChannelOpen",
    "ChannelOpenOk",
    "ConfirmSelect",
    "ConfirmSelectOk",
    "ConnectionBlocked",
    "ConnectionClose",
    "ConnectionCloseOk",
    "ConnectionOpen",
    "ConnectionOpenOk",
    "ConnectionStart",
    "ConnectionStartOk",
    "ConnectionTune",
    "ConnectionTuneOk",
    "ConnectionUnblocked",
    "ExchangeBind",
    "ExchangeBindOk",
    "ExchangeDeclare",
    "ExchangeDeclareOk",
    "ExchangeDelete",
    "ExchangeDeleteOk",
    "ExchangeUnbind",
    "ExchangeUnbindOk",
    "Method",
    "QueueBind",
    "QueueBindOk",
    "QueueDeclare",
    "QueueDeclareOk",
    "QueueDelete",
    "QueueDeleteOk",
    "QueuePurge",
    "QueuePurgeOk",
    "QueueUnbind",
    "QueueUnbindOk",
    "decode_method",
    "encode_method",
]
