"""The message value the core routes, and what a ``basic.get`` returns.

A published message is one immutable :class:`Message`; when it is routed to
several queues every queue holds the *same* object, and per-queue state
(redelivered flag, delivery count) lives in the queue's own entry, not here.
"""

from __future__ import annotations

import enum

from attrs import evolve, frozen

from amqplike.properties import BasicProperties

#: The header carrying how many times a message was delivered before (quorum queues).
X_DELIVERY_COUNT = "x-delivery-count"


@frozen(slots=True)
class Message:
    """A published message: where it was published, its properties and body.

    ``exchange`` and ``routing_key`` are those given to ``basic.publish``; they
    are echoed in ``basic.deliver`` and ``basic.return`` (AMQP 0-9-1, 1.8.3.9).
    """

    exchange: str
    routing_key: str
    properties: BasicProperties
    body: bytes

    @property
    def persistent(self) -> bool:
        """True for ``delivery_mode=2``, kept on disk when routed to a durable queue."""
        return self.properties.persistent

    def with_delivery_count(self, count: int) -> Message:
        """A copy whose ``x-delivery-count`` header is ``count`` (the shared message is untouched).

        Made only for redeliveries, so first deliveries cost nothing.
        """
        properties = self.properties
        headers = dict(properties.headers or {})
        headers[X_DELIVERY_COUNT] = count
        return evolve(self, properties=evolve(properties, headers=headers))


@frozen(slots=True)
class GetResult:
    """The answer to a ``basic.get`` that found a message (``basic.get-ok``).

    ``message_count`` is the number of ready messages left in the queue.
    """

    delivery_tag: int
    redelivered: bool
    message: Message
    message_count: int


class DropReason(enum.Enum):
    """Why a queue let go of a message without it being acked.

    The values are RabbitMQ's ``x-death`` reasons, copied as they are into
    the ``x-death`` header of a dead-lettered message.
    """

    REJECTED = "rejected"
    EXPIRED = "expired"
    MAXLEN = "maxlen"
    DELIVERY_LIMIT = "delivery_limit"
