"""Commands: a method together with its content, assembled from frames.

AMQP carries a message as a METHOD frame, then a HEADER frame, then zero or
more BODY frames on the same channel; frames of other channels may come in
between.  :class:`CommandAssembler` enforces that order per channel and
:func:`encode_command` produces it, splitting bodies to fit ``frame_max``.
"""

from __future__ import annotations

from typing import Final

from attrs import frozen

from amqplike.errors import (
    FRAME_ERROR,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    ChannelError,
    HardError,
)
from amqplike.properties import EMPTY_PROPERTIES, BasicProperties
from amqplike.wire.content import decode_header, encode_header
from amqplike.wire.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    FRAME_OVERHEAD_BYTES,
    encode_frame,
)
from amqplike.wire.methods import Method, decode_method, encode_method

#: Largest message body accepted by default (RabbitMQ 4's ``max_message_size``).
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024


@frozen(slots=True)
class Command:
    """A decoded method with, for content methods, its properties and body."""

    channel: int
    method: Method
    properties: BasicProperties = EMPTY_PROPERTIES
    body: bytes = b""


class _Partial:
    """Content being assembled on one channel."""

    __slots__ = ("body_size", "chunks", "method", "properties", "received")

    def __init__(self, method: Method) -> None:
        self.method = method
        self.properties: BasicProperties | None = None
        self.body_size = 0
        self.received = 0
        self.chunks: list[bytes] = []


class CommandAssembler:
    """Assemble frames into :class:`Command` objects, one connection's worth.

    Errors: ``HardError(505)`` for a frame out of order, ``HardError(501)``
    for a body longer than its header said, ``ChannelError(406)`` for a body
    larger than ``max_body_bytes`` (the channel is closed; the server drops
    that channel's remaining frames), plus the codec's 501/502/503.
    """

    __slots__ = ("_partial", "max_body_bytes")

    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes
        self._partial: dict[int, _Partial] = {}

    def discard(self, channel: int) -> None:
        """Forget any partial content on ``channel`` (it is closing)."""
        self._partial.pop(channel, None)

    def feed(self, frame_type: int, channel: int, payload: bytes) -> Command | None:
        """Take one METHOD, HEADER or BODY frame; return a command once complete."""
        partial = self._partial.get(channel)
        if frame_type == FRAME_METHOD:
            if partial is not None:
                del self._partial[channel]
                raise HardError(
                    UNEXPECTED_FRAME,
                    f"expected content frame for {partial.method.NAME}, got a method frame",
                    channel=channel,
                )
            method = decode_method(payload)
            if method.HAS_CONTENT:
                self._partial[channel] = _Partial(method)
                return None
            return Command(channel, method)
        if partial is None:
            raise HardError(
                UNEXPECTED_FRAME,
                f"content frame (type {frame_type}) without a content method",
                channel=channel,
            )
        if frame_type == FRAME_HEADER:
            if partial.properties is not None:
                del self._partial[channel]
                raise HardError(UNEXPECTED_FRAME, "second content header", channel=channel)
            body_size, properties = decode_header(payload)
            if body_size > self.max_body_bytes:
                del self._partial[channel]
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"message size {body_size} is larger than configured max size "
                    f"{self.max_body_bytes}",
                    channel=channel,
                    class_id=partial.method.CLASS_ID,
                    method_id=partial.method.METHOD_ID,
                )
            if body_size == 0:
                del self._partial[channel]
                return Command(channel, partial.method, properties, b"")
            partial.properties = properties
            partial.body_size = body_size
            return None
        if frame_type == FRAME_BODY:
            if partial.properties is None:
                del self._partial[channel]
                raise HardError(
                    UNEXPECTED_FRAME,
                    "body frame before content header",
                    channel=channel,
                )
            received = partial.received + len(payload)
            if received > partial.body_size:
                del self._partial[channel]
                raise HardError(
                    FRAME_ERROR,
                    f"body of {received} bytes exceeds the declared size {partial.body_size}",
                    channel=channel,
                )
            if received == partial.body_size and not partial.chunks:
                del self._partial[channel]
                return Command(channel, partial.method, partial.properties, payload)
            partial.chunks.append(payload)
            partial.received = received
            if received < partial.body_size:
                return None
            del self._partial[channel]
            return Command(channel, partial.method, partial.properties, b"".join(partial.chunks))
        raise HardError(UNEXPECTED_FRAME, f"unexpected frame type {frame_type}", channel=channel)


def encode_method_frame(channel: int, method: Method) -> bytes:
    """Return one METHOD frame carrying a method without content."""
    return encode_frame(FRAME_METHOD, channel, encode_method(method))


def encode_command(
    channel: int,
    method: Method,
    properties: BasicProperties | None = None,
    body: bytes = b"",
    frame_max: int = 131072,
) -> bytes:
    """Return the frames of a command: the method and, for content methods, header and body.

    Bodies are cut into BODY frames of at most ``frame_max`` bytes each.
    """
    method_frame = encode_frame(FRAME_METHOD, channel, encode_method(method))
    if not method.HAS_CONTENT:
        return method_frame
    parts = [
        method_frame,
        encode_frame(
            FRAME_HEADER,
            channel,
            encode_header(len(body), properties or EMPTY_PROPERTIES),
        ),
    ]
    chunk = frame_max - FRAME_OVERHEAD_BYTES
    if len(body) <= chunk:
        if body:
            parts.append(encode_frame(FRAME_BODY, channel, body))
    else:
        view = memoryview(body)
        for start in range(0, len(body), chunk):
            parts.append(encode_frame(FRAME_BODY, channel, bytes(view[start : start + chunk])))
    return b"".join(parts)
