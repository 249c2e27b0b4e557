"""Queue arguments and message expiration: parsing and validation, RabbitMQ-style.

``queue.declare`` arguments are checked once, on declare, and turned into a
frozen :class:`QueuePolicy`; a queue without any of the arguments below has
no policy at all and stays on the plain fast path.  Errors are 406
PRECONDITION_FAILED with RabbitMQ's wording (``rabbit_amqqueue:check_arguments``),
e.g. ``invalid arg 'x-max-length' for queue 'q' in vhost '/': {value_negative,-1}``.
Unknown arguments are accepted and ignored, as RabbitMQ does.

See ``docs/queue-arguments.md`` for what each argument does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from attrs import frozen

from amqplike.errors import PRECONDITION_FAILED, ChannelError

#: Largest per-message ``expiration`` RabbitMQ accepts (``?MAX_EXPIRY_TIMER``), in ms.
MAX_EXPIRATION_MS: Final = 4294967295
#: Largest ``x-max-priority`` (RabbitMQ's ``?MAX_SUPPORTED_PRIORITY``).
MAX_PRIORITY: Final = 255

#: ``x-overflow`` values.
DROP_HEAD: Final = "drop-head"
REJECT_PUBLISH: Final = "reject-publish"
REJECT_PUBLISH_DLX: Final = "reject-publish-dlx"
_OVERFLOWS: Final = (DROP_HEAD, REJECT_PUBLISH, REJECT_PUBLISH_DLX)

#: ``x-retry-backoff`` kinds.
_BACKOFF_TYPES: Final = ("fixed", "linear", "exponential")


class ArgumentError(ValueError):
    """A bad argument value; the text is RabbitMQ's Erlang-ish reason, e.g. ``{value_negative,-1}``."""


def type_name(value: Any) -> str:
    """The AMQP field type name a CBOR-decoded value stands for, as RabbitMQ reports it."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    return type(value).__name__


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"{{unacceptable_type,{type_name(value)}}}")
    return value


def _non_negative(value: Any) -> int:
    n = _integer(value)
    if n < 0:
        raise ArgumentError(f"{{value_negative,{n}}}")
    return n


def _positive(value: Any) -> int:
    n = _non_negative(value)
    if n == 0:
        raise ArgumentError("{value_zero,0}")
    return n


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{{unacceptable_type,{type_name(value)}}}")
    return value


def _overflow(value: Any) -> str:
    text = _string(value)
    if text not in _OVERFLOWS:
        raise ArgumentError(f'{{invalid_overflow,<<"{text}">>}}')
    return text


def _max_priority(value: Any) -> int:
    n = _positive(value)
    if n > MAX_PRIORITY:
        raise ArgumentError(f"{{max_value_exceeded,{n}}}")
    return n


@frozen(slots=True)
class RetryBackoff:
    """How long a message nacked/rejected with ``requeue=True`` is held back.

    ``delay_ms(n)`` for a message delivered ``n`` times so far (1 on the first
    nack): ``fixed`` waits ``min``; ``linear`` ``min * n``; ``exponential``
    ``min * multiplier ** (n - 1)``; all capped at ``max``.
    """

    type: str
    min_ms: int
    max_ms: int
    multiplier: float = 2.0

    def delay_ms(self, delivery_count: int) -> float:
        """The hold-back before the message is ready again, in milliseconds."""
        n = max(delivery_count, 1)
        if self.type == "fixed":
            delay = float(self.min_ms)
        elif self.type == "linear":
            delay = float(self.min_ms) * n
        else:
            # Capped exponent: a float overflow must not turn a long retry loop into an error.
            delay = self.min_ms * self.multiplier ** min(n - 1, 1000)
        return min(delay, float(self.max_ms))

    @classmethod
    def from_argument(cls, value: Any) -> RetryBackoff:
        """Parse ``x-retry-backoff``: an integer (a fixed delay in ms) or a table.

        The table has ``type`` (``fixed``, ``linear`` or ``exponential``,
        default ``exponential``), ``min`` (ms, the first delay), ``max`` (ms,
        the cap, default ``min`` for ``fixed`` and one hour otherwise, at
        least ``min``) and, for ``exponential``, ``multiplier`` (at least 1,
        default 2).
        """
        if not isinstance(value, Mapping):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentError(f"{{unacceptable_type,{type_name(value)}}}")
            delay = _non_negative(value)
            return cls("fixed", delay, delay)
        unknown = sorted(set(value) - {"type", "min", "max", "multiplier"})
        if unknown:
            raise ArgumentError(f'{{unknown_field,<<"{unknown[0]}">>}}')
        kind = _string(value.get("type", "exponential"))
        if kind not in _BACKOFF_TYPES:
            raise ArgumentError(f'{{invalid_type,<<"{kind}">>}}')
        if "min" not in value:
            raise ArgumentError('{missing_field,<<"min">>}')
        low = _non_negative(value["min"])
        high = _non_negative(value.get("max", low if kind == "fixed" else max(low, 3_600_000)))
        if high < low:
            raise ArgumentError(f"{{max_below_min,{high}}}")
        multiplier = value.get("multiplier", 2)
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, (int, float))
            or not 1 <= multiplier <= 1000
        ):
            raise ArgumentError(f"{{invalid_multiplier,{multiplier!r}}}")
        return cls(kind, low, high, float(multiplier))


@frozen(slots=True)
class QueuePolicy:
    """What a queue's arguments ask for; times in milliseconds, None for "not set"."""

    message_ttl: int | None = None
    expires: int | None = None
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = DROP_HEAD
    delivery_limit: int | None = None
    consumer_timeout: int | None = None
    max_priority: int | None = None
    retry_backoff: RetryBackoff | None = None

    @property
    def keeps_fast_path(self) -> bool:
        """True when the queue can stay on the plain FIFO path.

        Dead-lettering rejected messages, ``x-expires`` and the consumer
        timeout need no per-message bookkeeping; TTL, limits, delivery
        limits, priorities and backoff do.
        """
        return (
            self.message_ttl is None
            and self.max_length is None
            and self.max_length_bytes is None
            and self.delivery_limit is None
            and self.max_priority is None
            and self.retry_backoff is None
        )


#: Argument name to (QueuePolicy field, parser).
_QUEUE_ARGUMENTS: Final[Mapping[str, tuple[str, Callable[[Any], Any]]]] = {
    "x-message-ttl": ("message_ttl", _non_negative),
    "x-expires": ("expires", _positive),
    "x-dead-letter-exchange": ("dead_letter_exchange", _string),
    "x-dead-letter-routing-key": ("dead_letter_routing_key", _string),
    "x-max-length": ("max_length", _non_negative),
    "x-max-length-bytes": ("max_length_bytes", _non_negative),
    "x-overflow": ("overflow", _overflow),
    "x-delivery-limit": ("delivery_limit", _non_negative),
    "x-consumer-timeout": ("consumer_timeout", _non_negative),
    "x-max-priority": ("max_priority", _max_priority),
    "x-retry-backoff": ("retry_backoff", RetryBackoff.from_argument),
}


def parse_queue_arguments(arguments: Mapping[str, Any], resource: str) -> QueuePolicy | None:
    """Check ``queue.declare`` arguments; return their policy, None if there is none.

    ``resource`` is RabbitMQ's name of the queue (``queue 'q' in vhost '/'``)
    for the error text.  Raises ``ChannelError`` 406 for a bad value.
    """
    values: dict[str, Any] = {}
    for key, (name, parse) in _QUEUE_ARGUMENTS.items():
        if key not in arguments:
            continue
        try:
            values[name] = parse(arguments[key])
        except ArgumentError as e:
            raise ChannelError(
                PRECONDITION_FAILED, f"invalid arg '{key}' for {resource}: {e}"
            ) from None
    if "dead_letter_routing_key" in values and "dead_letter_exchange" not in values:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg 'x-dead-letter-routing-key' for {resource}:"
            " routing_key_but_no_dlx_defined",
        )
    if not values:
        return None
    return QueuePolicy(**values)


def parse_consumer_timeout(arguments: Mapping[str, Any], resource: str) -> int | None:
    """The ``x-consumer-timeout`` of ``basic.consume`` arguments in ms, None if absent (406 if bad)."""
    if "x-consumer-timeout" not in arguments:
        return None
    try:
        return _non_negative(arguments["x-consumer-timeout"])
    except ArgumentError as e:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid arg 'x-consumer-timeout' for {resource}: {e}"
        ) from None


def parse_expiration(expiration: str) -> int:
    """A message's ``expiration`` property in ms (AMQP sends it as a decimal string).

    406 PRECONDITION_FAILED "invalid expiration" with RabbitMQ's reason
    (``rabbit_basic:parse_expiration``) when it is not a whole number of
    milliseconds from 0 to 4294967295.
    """
    text = expiration.strip(" ")
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not digits.isascii() or not digits.isdigit():
        # string:to_integer/1: a number then junk is "leftover", no number at all "no_integer".
        i = 0
        while i < len(digits) and digits[i].isascii() and digits[i].isdigit():
            i += 1
        reason = "no_integer" if i == 0 else f'{{leftover_string,"{digits[i:]}"}}'
        raise ChannelError(PRECONDITION_FAILED, f"invalid expiration '{expiration}': {reason}")
    value = int(text)
    if value < 0:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid expiration '{expiration}': {{value_negative,{value}}}"
        )
    if value > MAX_EXPIRATION_MS:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid expiration '{expiration}': {{value_too_large,{value}}}"
        )
    return value
