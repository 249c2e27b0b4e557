"""Exchanges and the bindings that leave them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from attrs import define, field, frozen

from amqplike.core.routing import FrozenArguments, Router

if TYPE_CHECKING:
    from amqplike.core.queues import Queue


@frozen(slots=True)
class Binding:
    """A binding from a source exchange to a queue or another exchange.

    Two bindings are the same binding when source, destination, key and
    arguments are equal (AMQP 0-9-1, 1.7.2.3: binding twice is a no-op).
    """

    source: str
    destination: str
    destination_kind: Literal["queue", "exchange"]
    routing_key: str
    arguments: FrozenArguments = ()
    #: The argument table as declared (for the durable store); not part of equality.
    declared: Mapping[str, Any] | None = field(default=None, eq=False, repr=False)


@define(eq=False, slots=True)
class Exchange:
    """A named exchange of one virtual host, with its routing table.

    ``bindings`` holds the bindings that have this exchange as source, each
    with its destination object; ``incoming`` those that have it as
    destination (exchange-to-exchange bindings), with their source.
    """

    name: str
    type: str
    router: Router[Queue | Exchange]
    durable: bool = False
    auto_delete: bool = False
    internal: bool = False
    arguments: Mapping[str, Any] = field(factory=dict)
    bindings: dict[Binding, Queue | Exchange] = field(factory=dict)
    incoming: dict[Binding, Exchange] = field(factory=dict)
    #: How many of ``bindings`` go to exchanges; routing skips the graph walk at 0.
    exchange_destinations: int = 0
    deleted: bool = False
    #: True for an ``x-delayed-message`` exchange: messages with a positive
    #: ``x-delay`` header are held that long, then routed by ``router`` (its
    #: ``x-delayed-type``).
    delayed: bool = False

    def __repr__(self) -> str:
        return f"<Exchange {self.name!r} type={self.type}>"
