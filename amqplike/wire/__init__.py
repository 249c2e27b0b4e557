"""The sans-IO wire protocol shared by the server and both clients.

See ``docs/protocol.md`` for the byte layout.  Nothing here imports Twisted
or the broker core: it turns bytes into :class:`Command` objects and back.
"""

from __future__ import annotations

from amqplike.wire.commands import (
    DEFAULT_MAX_BODY_BYTES,
    Command,
    CommandAssembler,
    encode_command,
    encode_method_frame,
)
from amqplike.wire.content import decode_header, encode_header
from amqplike.wire.frames import (
    DEFAULT_FRAME_MAX_BYTES,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    MIN_FRAME_MAX_BYTES,
    PROTOCOL_HEADER,
    FrameDecoder,
    encode_frame,
)
from amqplike.wire.methods import METHODS, Method, decode_method, encode_method

__all__ = [
    "DEFAULT_FRAME_MAX_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "FRAME_BODY",
    "FRAME_HEADER",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "HEARTBEAT_FRAME",
    "METHODS",
    "MIN_FRAME_MAX_BYTES",
    "PROTOCOL_HEADER",
    "Command",
    "CommandAssembler",
    "FrameDecoder",
    "Method",
    "decode_header",
    "decode_method",
    "encode_command",
    "encode_frame",
    "encode_header",
    "encode_method",
    "encode_method_frame",
]
