"""Reply codes and the errors that carry them, shared by every layer.

AMQP 0-9-1 splits errors in two: a *soft* (channel) error closes only the
channel the offending method came on; a *hard* (connection) error closes
the whole connection.  The codes below are AMQP's own, so that users who
know RabbitMQ read them without a table.
"""

from __future__ import annotations

from typing import Final

REPLY_SUCCESS: Final = 200
CONTENT_TOO_LARGE: Final = 311
NO_ROUTE: Final = 312
NO_CONSUMERS: Final = 313
CONNECTION_FORCED: Final = 320
INVALID_PATH: Final = 402
ACCESS_REFUSED: Final = 403
NOT_FOUND: Final = 404
RESOURCE_LOCKED: Final = 405
PRECONDITION_FAILED: Final = 406
FRAME_ERROR: Final = 501
SYNTAX_ERROR: Final = 502
COMMAND_INVALID: Final = 503
CHANNEL_ERROR: Final = 504
UNEXPECTED_FRAME: Final = 505
RESOURCE_ERROR: Final = 506
NOT_ALLOWED: Final = 530
NOT_IMPLEMENTED: Final = 540
INTERNAL_ERROR: Final = 541

#: Codes that close only the channel (AMQP 0-9-1, section 1.2 "soft errors").
SOFT_ERROR_CODES: Final = frozenset(
    {CONTENT_TOO_LARGE, NO_ROUTE, NO_CONSUMERS, ACCESS_REFUSED, NOT_FOUND,
     RESOURCE_LOCKED, PRECONDITION_FAILED}
)

REPLY_NAMES: Final = {
    REPLY_SUCCESS: "REPLY_SUCCESS",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


class AMQPError(Exception):
    """A protocol error with an AMQP reply code and a human-readable text.

    The text is sent to the peer as ``reply_text``; following RabbitMQ it
    starts with the code's name, e.g. ``"NOT_FOUND - no queue 'q' in vhost '/'"``.
    """

    def __init__(
        self,
        reply_code: int,
        reply_text: str,
        *,
        channel: int | None = None,
        class_id: int = 0,
        method_id: int = 0,
    ) -> None:
        name = REPLY_NAMES.get(reply_code, str(reply_code))
        if not reply_text.startswith(name):
            reply_text = f"{name} - {reply_text}"
        super().__init__(reply_code, reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text
        #: The channel the offending frame came on, when the layer raising knows it.
        self.channel = channel
        #: The offending method's ids, echoed in ``channel.close``/``connection.close``.
        self.class_id = class_id
        self.method_id = method_id

    def __str__(self) -> str:
        return f"({self.reply_code}) {self.reply_text}"

    @property
    def is_hard(self) -> bool:
        """True when the error must close the whole connection."""
        return self.reply_code not in SOFT_ERROR_CODES


class ChannelError(AMQPError):
    """A soft error: the channel is closed, the connection carries on."""


class HardError(AMQPError):
    """A hard error: the whole connection is closed with ``connection.close``."""


def channel_error(reply_code: int, reply_text: str) -> ChannelError:
    """Build a channel-closing error (403, 404, 405, 406 ...)."""
    return ChannelError(reply_code, reply_text)


def hard_error(reply_code: int, reply_text: str) -> HardError:
    """Build a connection-closing error (501 ... 541, 320, 530)."""
    return HardError(reply_code, reply_text)
