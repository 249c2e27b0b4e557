"""Message properties, the one value type shared by core, wire and clients.

These are AMQP 0-9-1's ``basic`` content properties under pika's names, so
code written for ``pika.BasicProperties`` works unchanged.  The object is an
immutable value: change it with :func:`attrs.evolve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any, Final

from attrs import frozen

#: Property names in wire order; the codec sends only those that are set.
PROPERTY_NAMES: Final = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)

#: ``property_values(p)``: the values of ``p`` as a tuple in :data:`PROPERTY_NAMES` order
#: (one C call; the codecs of the wire and of the store both start from it).
property_values: Final = attrgetter(*PROPERTY_NAMES)
#: Where ``reply_to`` is in that tuple.
REPLY_TO_INDEX: Final = PROPERTY_NAMES.index("reply_to")

#: ``delivery_mode`` values, as in AMQP.
TRANSIENT_DELIVERY_MODE: Final = 1
PERSISTENT_DELIVERY_MODE: Final = 2


@frozen(slots=True)
class BasicProperties:
    """The content properties of a message (all optional).

    ``headers`` is a mapping of str to CBOR-representable values;
    ``expiration`` is, as in AMQP, a string holding milliseconds;
    ``timestamp`` is seconds since the epoch.
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: Mapping[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None

    @property
    def persistent(self) -> bool:
        """True for ``delivery_mode=2`` messages, which durable queues keep on disk."""
        return self.delivery_mode == PERSISTENT_DELIVERY_MODE


#: The shared "no properties" value; publishing without properties allocates nothing.
EMPTY_PROPERTIES: Final = BasicProperties()
