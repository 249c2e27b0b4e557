"""Frame layout: round trips, incremental decoding and the limits checked before buffering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amqplike.errors import FRAME_ERROR, HardError
from amqplike.wire.frames import (
    FRAME_BODY,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    FrameDecoder,
    encode_frame,
)

frames = st.lists(
    st.tuples(
        st.sampled_from([FRAME_METHOD, FRAME_BODY, FRAME_HEARTBEAT]),
        st.integers(0, 65535),
        st.binary(max_size=300),
    ),
    max_size=8,
)


@given(frames, st.data())
def test_round_trip_any_split(items: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    """Frames come out whole and in order however the stream is cut."""
    stream = b"".join(encode_frame(*f) for f in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = FrameDecoder(4096)
    out: list[tuple[int, int, bytes]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert out == items
    assert decoder.buffered_bytes == 0


def test_one_byte_at_a_time() -> None:
    """A stream fed one byte at a time decodes to the same frames."""
    items = [(FRAME_METHOD, 1, b"abc"), (FRAME_HEARTBEAT, 0, b""), (FRAME_BODY, 7, b"x" * 100)]
    stream = b"".join(encode_frame(*f) for f in items)
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == items


def test_heartbeat_frame_layout() -> None:
    """The heartbeat frame is type 8, channel 0, empty, end byte 0xCE."""
    assert HEARTBEAT_FRAME == b"\x08\x00\x00\x00\x00\x00\x00\xce"
    assert FrameDecoder().feed(HEARTBEAT_FRAME) == [(FRAME_HEARTBEAT, 0, b"")]


@pytest.mark.parametrize("size", [4096 - 8 + 1, 2**32 - 1])
def test_oversize_prefix_refused_before_buffering(size: int) -> None:
    """A declared size over frame_max is a 501 as soon as the 7 header bytes are in."""
    decoder = FrameDecoder(4096)
    header = bytes([FRAME_METHOD, 0, 1]) + size.to_bytes(4, "big")
    with pytest.raises(HardError) as info:
        decoder.feed(header)
    assert info.value.reply_code == FRAME_ERROR
    assert "exceeds frame_max" in info.value.reply_text
    assert decoder.buffered_bytes == 0


def test_largest_allowed_frame_accepted() -> None:
    """A frame of exactly frame_max bytes is accepted."""
    decoder = FrameDecoder(4096)
    payload = b"p" * (4096 - 8)
    assert decoder.feed(encode_frame(FRAME_BODY, 1, payload)) == [(FRAME_BODY, 1, payload)]


def test_unknown_frame_type() -> None:
    """An unknown frame type is a frame error."""
    with pytest.raises(HardError) as info:
        FrameDecoder().feed(bytes([9, 0, 0, 0, 0, 0, 0, 0xCE]))
    assert info.value.reply_code == FRAME_ERROR


def test_missing_frame_end() -> None:
    """A frame whose end byte is not 0xCE is a frame error."""
    with pytest.raises(HardError) as info:
        FrameDecoder().feed(encode_frame(FRAME_BODY, 1, b"abc")[:-1] + b"\x00")
    assert info.value.reply_code == FRAME_ERROR
    assert "end byte" in info.value.reply_text
