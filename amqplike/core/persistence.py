"""The port through which the core tells a durable store what must survive a restart.

The core decides *what* is durable, as RabbitMQ does: durable exchanges,
durable non-exclusive queues, bindings whose two ends are durable, and
persistent messages (``delivery_mode=2``) routed to durable queues.  It
tells a :class:`Persistence` at the moment things change; the integration
(``amqplike/services/persistence.py``) maps the calls onto the store and
reports back what became durable with :func:`settle_stored`.

The core imports no store: this module only defines the calls it makes.
The default, :data:`NO_PERSISTENCE`, does nothing, so the in-memory broker
behaves exactly as before.

Message identity: :meth:`Persistence.append` returns the stored message's
id (``> 0``), which the core keeps in each stored queue entry
(:attr:`QueueEntry.message_id`) to name it in :meth:`Persistence.remove`
and :meth:`Persistence.delivered`.  An id of 0 means "not stored".

Confirms: a publish in confirm mode that is stored passes a token; its
``basic.ack`` waits until the integration calls :func:`settle_stored` with
that token (the store committed it) or nacks it (the write failed).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from amqplike.core.channel import Channel
    from amqplike.core.exchanges import Binding, Exchange
    from amqplike.core.message import Message
    from amqplike.core.queues import Queue


class Persistence(Protocol):
    """What the core calls to make durable state durable (see the module docstring).

    Every method but :meth:`read` only records an intention and returns at
    once; :meth:`read` may block briefly (it reads message bodies back).
    """

    @property
    def enabled(self) -> bool:
        """False for :data:`NO_PERSISTENCE`: the core skips all durable bookkeeping."""
        ...

    @property
    def accepting(self) -> bool:
        """False while publishes that must be stored are refused (disk alarm, disk full)."""
        ...

    def exchange_declared(self, vhost: str, exchange: Exchange) -> None:
        """A durable exchange was created."""

    def exchange_deleted(self, vhost: str, exchange: Exchange) -> None:
        """A durable exchange was deleted (with its bindings)."""

    def queue_declared(self, queue: Queue) -> None:
        """A durable, non-exclusive queue was created."""

    def queue_deleted(self, queue: Queue) -> None:
        """A stored queue was deleted (with its bindings and messages)."""

    def queue_purged(self, queue: Queue, keep: Collection[int]) -> None:
        """A stored queue was purged: drop its messages but ``keep`` (delivered, unacked)."""

    def binding_added(self, vhost: str, binding: Binding) -> None:
        """A binding between two durable ends was added."""

    def binding_removed(self, vhost: str, binding: Binding) -> None:
        """Such a binding was removed."""

    def append(
        self,
        vhost: str,
        queues: Sequence[str],
        message: Message,
        token: object,
        expires: Sequence[float | None] | None = None,
    ) -> int:
        """Store a persistent message for durable ``queues``; return its id (> 0).

        ``token`` (None, or a publish's confirm identity) comes back through
        :func:`settle_stored` once the message is on disk or failed.
        ``expires`` is None when no entry expires, else one item per queue:
        the absolute expiry time of its entry (the broker's clock at publish
        plus the effective TTL), or None; recovery gives it back, so a TTL
        does not restart with the broker.
        """
        ...

    def remove(self, vhost: str, queue: str, message_id: int) -> None:
        """A stored message left ``queue`` (acked, auto-acked, rejected, expired, dropped)."""

    def delivered(self, vhost: str, queue: str, message_id: int, count: int) -> None:
        """A stored message of ``queue`` was delivered; ``count`` is its delivery count now."""

    def read(self, message_ids: Sequence[int]) -> Mapping[int, Message]:
        """Read stored messages back (bodies paged out); an id missing is gone for good."""
        ...

    def delay(
        self, vhost: str, exchange: str, message: Message, due: float, token: object
    ) -> int:
        """Store a persistent message held by a durable delayed exchange until ``due``.

        Return its id (> 0), or 0 when it is not stored; ``token`` as for
        :meth:`append`.
        """
        ...

    def undelay(self, vhost: str, message_id: int) -> None:
        """A stored delayed message was released (routed) or dropped."""


class NoPersistence:
    """The default :class:`Persistence`: nothing is stored (the in-memory broker)."""

    enabled: Final = False
    accepting: Final = True

    def exchange_declared(self, vhost: str, exchange: Exchange) -> None:
        """Nothing to do."""

    def exchange_deleted(self, vhost: str, exchange: Exchange) -> None:
        """Nothing to do."""

    def queue_declared(self, queue: Queue) -> None:
        """Nothing to do."""

    def queue_deleted(self, queue: Queue) -> None:
        """Nothing to do."""

    def queue_purged(self, queue: Queue, keep: Collection[int]) -> None:
        """Nothing to do."""

    def binding_added(self, vhost: str, binding: Binding) -> None:
        """Nothing to do."""

    def binding_removed(self, vhost: str, binding: Binding) -> None:
        """Nothing to do."""

    def append(
        self,
        vhost: str,
        queues: Sequence[str],
        message: Message,
        token: object,
        expires: Sequence[float | None] | None = None,
    ) -> int:
        """Not stored: 0."""
        return 0

    def remove(self, vhost: str, queue: str, message_id: int) -> None:
        """Nothing to do."""

    def delivered(self, vhost: str, queue: str, message_id: int, count: int) -> None:
        """Nothing to do."""

    def read(self, message_ids: Sequence[int]) -> Mapping[int, Message]:
        """Nothing is stored."""
        return {}

    def delay(
        self, vhost: str, exchange: str, message: Message, due: float, token: object
    ) -> int:
        """Not stored: 0."""
        return 0

    def undelay(self, vhost: str, message_id: int) -> None:
        """Nothing to do."""


#: The shared do-nothing persistence every broker starts with.
NO_PERSISTENCE: Final = NoPersistence()


def settle_stored(tokens: Iterable[object], ok: bool) -> None:
    """Release the publisher confirms of stored publishes: ``ok`` acks, else nacks.

    ``tokens`` are those the core passed to :meth:`Persistence.append`
    (others are ignored).  A confirm of a channel closed meanwhile is
    dropped, as the channel's are.
    """
    for token in tokens:
        if isinstance(token, ConfirmToken):
            token.channel.stored(token.seq, ok)


class ConfirmToken:
    """The identity of one publish awaiting its store write: its channel and sequence number."""

    __slots__ = ("channel", "seq")

    def __init__(self, channel: Channel, seq: int) -> None:
        self.channel = channel
        self.seq = seq

    def __repr__(self) -> str:
        return f"<ConfirmToken {self.channel!r} #{self.seq}>"
