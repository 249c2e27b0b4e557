"""The limits a server offers and enforces, as one frozen configuration value."""

from __future__ import annotations

from typing import Final

from attrs import field, frozen, validators

from amqplike.wire.commands import DEFAULT_MAX_BODY_BYTES
from amqplike.wire.frames import DEFAULT_FRAME_MAX_BYTES, MIN_FRAME_MAX_BYTES

#: ``channel_max`` offered in ``connection.tune`` (RabbitMQ's default).
DEFAULT_CHANNEL_MAX: Final = 2047
#: Heartbeat interval offered in ``connection.tune``, in seconds.
DEFAULT_HEARTBEAT_SECONDS: Final = 60
#: Time a client has from TCP accept to ``connection.open-ok`` (docs/protocol.md, 6).
HANDSHAKE_TIMEOUT_SECONDS: Final = 10.0
#: Time the server waits for ``connection.close-ok`` before dropping the socket.
CLOSE_TIMEOUT_SECONDS: Final = 3.0
#: Output buffered for one connection above which deliveries to it are paused.
MAX_BUFFERED_BYTES: Final = 1024 * 1024

_LARGEST_LONG: Final = 0xFFFFFFFF
_LARGEST_SHORT: Final = 0xFFFF


@frozen
class ServerLimits:
    """What the server proposes in ``connection.tune`` and enforces afterwards.

    ``frame_max``, ``channel_max`` and ``heartbeat`` (seconds, 0 disables) are
    the upper bounds a client may accept in ``connection.tune-ok``;
    ``max_body_bytes`` bounds one message body (406 above it).
    ``busy_poll_seconds`` keeps the reactor polling instead of sleeping for
    that long after each batch of input (0, the default here, never): see
    :meth:`~amqplike.server.BrokerFactory.stay_awake`.
    """

    frame_max: int = field(
        default=DEFAULT_FRAME_MAX_BYTES,
        validator=[validators.ge(MIN_FRAME_MAX_BYTES), validators.le(_LARGEST_LONG)],
    )
    channel_max: int = field(
        default=DEFAULT_CHANNEL_MAX,
        validator=[validators.ge(1), validators.le(_LARGEST_SHORT)],
    )
    heartbeat: int = field(
        default=DEFAULT_HEARTBEAT_SECONDS,
        validator=[validators.ge(0), validators.le(_LARGEST_SHORT)],
    )
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES, validator=validators.ge(0))
    handshake_timeout_seconds: float = field(
        default=HANDSHAKE_TIMEOUT_SECONDS, validator=validators.gt(0)
    )
    close_timeout_seconds: float = field(default=CLOSE_TIMEOUT_SECONDS, validator=validators.gt(0))
    max_buffered_bytes: int = field(default=MAX_BUFFERED_BYTES, validator=validators.ge(0))
    busy_poll_seconds: float = field(default=0.0, validator=validators.ge(0))
