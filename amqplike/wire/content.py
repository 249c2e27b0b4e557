"""Content headers: a message's body size and properties.

A HEADER frame's payload is the CBOR array ``[body_size, p0, p1, ...]`` with
the properties in :data:`~amqplike.properties.PROPERTY_NAMES` order and
trailing unset properties left out, so a message without properties costs
two bytes.
"""

from __future__ import annotations

from typing import Any, Final

from amqplike.properties import (
    EMPTY_PROPERTIES,
    PROPERTY_NAMES,
    BasicProperties,
    property_values,
)
from amqplike.wire.values import (
    LONGLONG,
    OCTET,
    SHORTSTR,
    TABLE,
    check_field,
    dumps,
    loads,
    syntax_error,
)

#: The kind of each property, in wire order.
PROPERTY_KINDS: Final = (
    SHORTSTR,  # content_type
    SHORTSTR,  # content_encoding
    TABLE,  # headers
    OCTET,  # delivery_mode
    OCTET,  # priority
    SHORTSTR,  # correlation_id
    SHORTSTR,  # reply_to
    SHORTSTR,  # expiration
    SHORTSTR,  # message_id
    LONGLONG,  # timestamp
    SHORTSTR,  # type
    SHORTSTR,  # user_id
    SHORTSTR,  # app_id
    SHORTSTR,  # cluster_id
)
_NPROPS: Final = len(PROPERTY_NAMES)


def properties_to_list(properties: BasicProperties) -> list[Any]:
    """Return the property values in wire order, trailing ``None`` values dropped."""
    if properties is EMPTY_PROPERTIES:
        return []
    values = list(property_values(properties))
    while values and values[-1] is None:
        values.pop()
    return values


def encode_header(body_size: int, properties: BasicProperties) -> bytes:
    """Return the payload of a HEADER frame."""
    return dumps([body_size, *properties_to_list(properties)])


def decode_header(payload: bytes) -> tuple[int, BasicProperties]:
    """Decode a HEADER frame's payload into ``(body_size, properties)``.

    Raises ``HardError`` 501 for invalid CBOR and 502 for wrong types.
    """
    items = loads(payload)
    if type(items) is not list or not 1 <= len(items) <= _NPROPS + 1:
        raise syntax_error("content header must be an array [body_size, properties...]")
    body_size = items[0]
    if not check_field(LONGLONG, body_size):
        raise syntax_error(
            f"content header: body size must be an unsigned integer, got {body_size!r:.40}"
        )
    if len(items) == 1:
        return body_size, EMPTY_PROPERTIES
    values = items[1:]
    for name, kind, value in zip(PROPERTY_NAMES, PROPERTY_KINDS, values):
        if value is not None and not check_field(kind, value):
            raise syntax_error(
                f"content header: property '{name}' must be a {kind}, got {value!r:.80}"
            )
    return body_size, BasicProperties(*values)
