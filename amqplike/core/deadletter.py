"""Dead-lettering: the message a queue republishes to its dead-letter exchange.

This is RabbitMQ 3.x's ``rabbit_dead_letter`` (``make_msg``,
``update_x_death_header``, ``detect_cycles``) over our immutable values, so
tools that read ``x-death`` work unchanged:

- ``x-death`` is a list of tables, one per (queue, reason), the most recent
  first.  A new death for a (queue, reason) already listed increments that
  table's ``count`` and moves it to the front, keeping its other fields;
  otherwise a table with ``count`` 1, ``reason``, ``queue``, ``time``,
  ``exchange``, ``routing-keys`` and, when the message had a per-message TTL,
  ``original-expiration`` is put in front.
- ``x-first-death-{queue,reason,exchange}`` are set on the first death and
  kept; ``x-last-death-{queue,reason,exchange}`` follow every death.
- ``time`` is an int, seconds since the epoch: our CBOR headers have no AMQP
  ``timestamp`` type, and an integer is what RabbitMQ's clients decode a
  timestamp to anyway.
- The dead-lettered message keeps its properties except ``expiration``
  (removed, so it does not expire again on the same TTL); it is published to
  the dead-letter exchange with the dead-letter routing key if the queue has
  one, else with its own routing key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from attrs import evolve

from amqplike.core.message import DropReason, Message

X_DEATH: Final = "x-death"


def _death_key(table: Any) -> tuple[Any, Any]:
    if isinstance(table, Mapping):
        return table.get("queue"), table.get("reason")
    return None, None


def dead_letter_message(
    message: Message,
    reason: DropReason,
    queue: str,
    exchange: str,
    routing_key: str | None,
    now: float,
) -> Message:
    """The message as it is republished to dead-letter exchange ``exchange``.

    ``queue`` is the queue it died in; ``routing_key`` the queue's
    ``x-dead-letter-routing-key`` (None to keep the message's own key).
    """
    properties = message.properties
    old_headers = properties.headers or {}
    info: dict[str, Any] = {
        "reason": reason.value,
        "queue": queue,
        "time": int(now),
        "exchange": message.exchange,
        "routing-keys": [message.routing_key],
    }
    if properties.expiration is not None:
        info["original-expiration"] = properties.expiration
    headers = dict(old_headers)
    deaths = old_headers.get(X_DEATH)
    if isinstance(deaths, Sequence) and not isinstance(deaths, (str, bytes)) and deaths:
        key = (queue, reason.value)
        others: list[Any] = []
        match: Mapping[str, Any] | None = None
        for table in deaths:
            if match is None and _death_key(table) == key:
                match = table
            else:
                others.append(table)
        if match is None:
            first = {"count": 1, **info}
        else:
            count = match.get("count", 0)
            first = dict(match)
            first["count"] = (count if isinstance(count, int) else 0) + 1
        headers[X_DEATH] = [first, *others]
    else:
        headers[X_DEATH] = [{"count": 1, **info}]
        headers["x-first-death-exchange"] = message.exchange
        headers["x-first-death-queue"] = queue
        headers["x-first-death-reason"] = reason.value
    headers["x-last-death-exchange"] = message.exchange
    headers["x-last-death-queue"] = queue
    headers["x-last-death-reason"] = reason.value
    if routing_key is not None:
        # A dead-letter routing key replaces the CC keys too (rabbit_dead_letter:make_msg).
        headers.pop("CC", None)
    return Message(
        exchange,
        message.routing_key if routing_key is None else routing_key,
        evolve(properties, headers=headers, expiration=None),
        message.body,
    )


def is_cycle(queue: str, message: Message) -> bool:
    """Whether republishing a dead-lettered ``message`` into ``queue`` closes a cycle.

    RabbitMQ's ``is_cycle``: look through ``x-death`` (most recent first,
    including the death just recorded) for ``queue``; it is a cycle when the
    queue is there and no death up to and including that one was a
    rejection, i.e. the message would go round with no consumer ever
    deciding.  The caller skips this check for ``rejected`` deaths.
    """
    deaths = (message.properties.headers or {}).get(X_DEATH)
    if not isinstance(deaths, Sequence) or isinstance(deaths, (str, bytes)):
        return False
    for table in deaths:
        name, reason = _death_key(table)
        if reason == DropReason.REJECTED.value:
            return False
        if name == queue:
            return True
    return False
