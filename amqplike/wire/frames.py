"""Frame layout: the length-delimited envelope every byte on the wire travels in.

A frame is ``type (1 byte) | channel (2 bytes) | size (4 bytes) | payload | 0xCE``,
big-endian, as in AMQP 0-9-1.  The decoder refuses a declared size above the
negotiated ``frame_max`` *before* buffering the payload, so a hostile length
prefix costs nothing.
"""

from __future__ import annotations

import struct
from typing import Final

from amqplike.errors import FRAME_ERROR, HardError

#: Sent by a client before anything else: magic, then major and minor version.
PROTOCOL_HEADER: Final = b"AMQPLIKE\x00\x01"

FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_HEARTBEAT: Final = 8
FRAME_TYPES: Final = frozenset({FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT})

FRAME_END: Final = 0xCE
FRAME_END_BYTE: Final = b"\xce"
#: Bytes before the payload.
FRAME_HEADER_BYTES: Final = 7
#: Bytes a frame adds around its payload (header and end marker).
FRAME_OVERHEAD_BYTES: Final = 8

#: The largest frame (payload plus overhead) either side may send before ``tune``.
MIN_FRAME_MAX_BYTES: Final = 4096
DEFAULT_FRAME_MAX_BYTES: Final = 131072
MAX_CHANNEL: Final = 65535

_HEADER = struct.Struct(">BHI")
_pack_header = _HEADER.pack
_unpack_header_from = _HEADER.unpack_from

#: A heartbeat frame: type 8 on channel 0 with an empty payload.
HEARTBEAT_FRAME: Final = _pack_header(FRAME_HEARTBEAT, 0, 0) + FRAME_END_BYTE


def encode_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    """Return one frame holding ``payload``; the caller keeps it under ``frame_max``."""
    return b"".join((_pack_header(frame_type, channel, len(payload)), payload, FRAME_END_BYTE))


class FrameDecoder:
    """Turn a byte stream into ``(frame_type, channel, payload)`` tuples.

    Feed it whatever the transport delivers, whole buffers or single bytes;
    it keeps the incomplete tail.  Errors are :class:`~amqplike.errors.HardError`
    with code 501 (FRAME_ERROR): a frame error leaves the stream unsynchronised,
    so AMQP requires closing the connection.
    """

    __slots__ = ("_chunks", "_frame", "_have", "_head", "frame_max")

    def __init__(self, frame_max: int = DEFAULT_FRAME_MAX_BYTES) -> None:
        #: The largest whole frame accepted, in bytes; raise it after ``tune``.
        self.frame_max = frame_max
        # An incomplete frame is held in one of two ways, so that a large frame
        # arriving in several reads is copied once, not once per read:
        # ``_head`` holds the first bytes (< 7) of a frame whose header is not
        # complete; once it is, ``_frame`` is ``(type, channel, size)`` and
        # ``_chunks`` the ``_have`` bytes of payload (and end byte) seen so far.
        self._head = b""
        self._frame: tuple[int, int, int] | None = None
        self._chunks: list[bytes | memoryview] = []
        self._have = 0

    @property
    def buffered_bytes(self) -> int:
        """How many bytes of an incomplete frame are held."""
        if self._frame is not None:
            return FRAME_HEADER_BYTES + self._have
        return len(self._head)

    def _reset(self) -> None:
        self._head = b""
        self._frame = None
        self._chunks = []
        self._have = 0

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add ``data`` and return every frame it completes, in order.

        Raises ``HardError(501)`` on an unknown frame type, a declared size
        above ``frame_max`` (checked as soon as the 7 header bytes are in) or a
        missing frame-end byte.
        """
        frames: list[tuple[int, int, bytes]] = []
        pos = 0
        if self._frame is not None:
            frame_type, channel, size = self._frame
            need = size + 1 - self._have
            if len(data) < need:
                self._chunks.append(data)
                self._have += len(data)
                return frames
            if data[need - 1] != FRAME_END:
                got = data[need - 1]
                self._reset()
                raise HardError(FRAME_ERROR, f"frame end byte missing (got 0x{got:02x})")
            chunks = self._chunks
            chunks.append(memoryview(data)[: need - 1])
            frames.append((frame_type, channel, b"".join(chunks)))
            self._reset()
            buf = data
            pos = need
        elif self._head:
            buf = self._head + data
            self._head = b""
        else:
            buf = data
        end = len(buf)
        max_payload = self.frame_max - FRAME_OVERHEAD_BYTES
        while end - pos >= FRAME_HEADER_BYTES:
            frame_type, channel, size = _unpack_header_from(buf, pos)
            if frame_type not in FRAME_TYPES:
                self._reset()
                raise HardError(FRAME_ERROR, f"unknown frame type {frame_type}")
            if size > max_payload:
                self._reset()
                raise HardError(
                    FRAME_ERROR,
                    f"frame size {size + FRAME_OVERHEAD_BYTES} exceeds frame_max {self.frame_max}",
                )
            start = pos + FRAME_HEADER_BYTES
            stop = start + size
            if stop >= end:
                # Incomplete: keep a view of its payload so far, not a copy.
                self._frame = (frame_type, channel, size)
                if start < end:
                    self._chunks = [memoryview(buf)[start:end]]
                    self._have = end - start
                return frames
            if buf[stop] != FRAME_END:
                self._reset()
                raise HardError(FRAME_ERROR, f"frame end byte missing (got 0x{buf[stop]:02x})")
            frames.append((frame_type, channel, buf[start:stop]))
            pos = stop + 1
        if pos < end:
            self._head = buf[pos:]
        return frames
