"""Method and content codec: round trips, and refusal of everything the protocol does not allow."""

from __future__ import annotations

from typing import Any

import attrs
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqplike.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    PRECONDITION_FAILED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    HardError,
)
from amqplike.properties import PROPERTY_NAMES, BasicProperties
from amqplike.wire import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    CommandAssembler,
    FrameDecoder,
    decode_header,
    decode_method,
    encode_command,
    encode_frame,
    encode_header,
    encode_method,
)
from amqplike.wire.content import PROPERTY_KINDS
from amqplike.wire.methods import METHODS, BasicAck, BasicDeliver, BasicPublish, QueueDeclare
from amqplike.wire.values import (
    BOOL,
    BYTES,
    LONG,
    LONGLONG,
    LONGSTR,
    OCTET,
    SHORT,
    SHORTSTR,
    TABLE,
)

plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)

KIND_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    SHORTSTR: st.text(max_size=60),
    LONGSTR: st.text(max_size=300),
    BOOL: st.booleans(),
    OCTET: st.integers(0, 255),
    SHORT: st.integers(0, 65535),
    LONG: st.integers(0, 2**32 - 1),
    LONGLONG: st.integers(0, 2**64 - 1),
    TABLE: st.dictionaries(st.text(max_size=8), plain_values, max_size=4),
    BYTES: st.binary(max_size=40),
}


@st.composite
def methods(draw: st.DrawFn) -> Any:
    cls = draw(st.sampled_from(sorted(METHODS.values(), key=lambda c: c.NAME)))
    return cls(*(draw(KIND_STRATEGIES[kind]) for _, kind in cls.FIELDS))


properties = st.builds(
    BasicProperties,
    **{name: st.none() | KIND_STRATEGIES[kind] for name, kind in zip(PROPERTY_NAMES, PROPERTY_KINDS)},
)


@given(methods())
def test_every_method_round_trips(method: Any) -> None:
    """Every method with any valid field values decodes to an equal method."""
    assert decode_method(encode_method(method)) == method


@given(st.integers(0, 2**64 - 1), properties)
def test_content_header_round_trips(size: int, props: BasicProperties) -> None:
    """Any body size and properties survive the content header."""
    assert decode_header(encode_header(size, props)) == (size, props)


def test_header_without_properties_is_tiny() -> None:
    """A message without properties costs a two-byte header payload."""
    assert encode_header(5, BasicProperties()) == b"\x81\x05"


@given(methods(), properties, st.binary(max_size=3000), st.integers(1, 40))
@settings(max_examples=60)
def test_command_round_trip_any_chunking(
    method: Any, props: BasicProperties, body: bytes, step: int
) -> None:
    """Commands survive framing, body splitting and arbitrary stream cuts."""
    data = encode_command(5, method, props, body, frame_max=4096)
    decoder, assembler = FrameDecoder(4096), CommandAssembler()
    out = []
    for i in range(0, len(data), step):
        for frame in decoder.feed(data[i : i + step]):
            command = assembler.feed(*frame)
            if command is not None:
                out.append(command)
    assert len(out) == 1
    assert out[0].method == method
    if method.HAS_CONTENT:
        assert (out[0].properties, out[0].body) == (props, body)


def test_body_split_to_frame_max() -> None:
    """A body larger than frame_max is cut into BODY frames no larger than frame_max."""
    data = encode_command(1, BasicPublish(), BasicProperties(), b"b" * 10000, frame_max=4096)
    frames = FrameDecoder(4096).feed(data)
    bodies = [p for t, _, p in frames if t == FRAME_BODY]
    assert [len(b) for b in bodies] == [4088, 4088, 1824]


def _code(payload: bytes) -> int:
    with pytest.raises(AMQPError) as info:
        decode_method(payload)
    return info.value.reply_code


def test_unknown_method_is_command_invalid() -> None:
    """An unknown (class, method) pair is 503."""
    assert _code(cbor2.dumps([60, 99])) == COMMAND_INVALID


@pytest.mark.parametrize(
    "fields",
    [
        [60, 80, "1", False],  # delivery_tag must be an integer
        [60, 80, -1, False],  # and unsigned
        [60, 80, 1, 0],  # multiple must be a bool
        [60, 80, 1],  # too few fields
        [60, 80, 1, False, True],  # too many fields
        [50, 10, "x" * 256, False, False, False, False, False, {}],  # shortstr over 255 bytes
        [50, 10, "q", False, False, False, False, False, {1: 2}],  # table key not text
        [50, 10, "q", False, False, False, False, False, []],  # table not a map
        ["60", 80, 1, False],  # class id not an integer
        {"a": 1},  # not an array
    ],
)
def test_wrong_fields_are_syntax_errors(fields: Any) -> None:
    """Wrong types, ranges and counts are 502, never a crash."""
    assert _code(cbor2.dumps(fields)) in (SYNTAX_ERROR, FRAME_ERROR)


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # empty
        b"\xff",  # a break with nothing open
        b"\x9f" * 100000,  # deep indefinite nesting
        b"\x81" * 100000,  # deep definite nesting
        b"\x9b\x00\x00\x00\x00\xff\xff\xff\xff",  # array declaring 4 billion items
        b"\x5b\x00\xff\xff\xff\xff\xff\xff\xff",  # byte string declaring 2**56 bytes
        b"\x9f\x18\x3c\x18\x50\x01\xf4\xff",  # indefinite array
        b"\x84\x18\x3c\x18\x50\x01\xf4\x00",  # trailing garbage
        b"\xa2\x61a\x01\x61a\x02",  # duplicate map keys
    ],
)
def test_cbor_bombs_are_frame_errors(payload: bytes) -> None:
    """Malformed or hostile CBOR is a protocol error, never RecursionError or MemoryError."""
    assert _code(payload) in (FRAME_ERROR, SYNTAX_ERROR)


def test_semantic_tags_are_refused() -> None:
    """A tagged value (here a datetime) in a table is not a value the protocol allows."""
    payload = cbor2.dumps([50, 10, "q", False, False, False, False, False, {}])
    tagged = payload[:-1] + b"\xa1\x61t\xc1\x1a\x00\x00\x00\x01"
    assert _code(tagged) == SYNTAX_ERROR


@given(st.binary(max_size=64))
def test_random_bytes_only_protocol_errors(payload: bytes) -> None:
    """Any bytes as a method payload decode or fail with the protocol's own error."""
    try:
        decode_method(payload)
    except AMQPError as e:
        assert e.reply_code in (FRAME_ERROR, SYNTAX_ERROR, COMMAND_INVALID)


@given(methods(), st.data())
def test_mutated_frames_only_protocol_errors(method: Any, data: st.DataObject) -> None:
    """Flipping bytes of a valid stream yields commands or protocol errors, nothing else (P1)."""
    stream = bytearray(encode_command(1, method, BasicProperties(), b"body"))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    decoder, assembler = FrameDecoder(), CommandAssembler()
    try:
        for frame in decoder.feed(bytes(stream)):
            if frame[0] != 8:
                assembler.feed(*frame)
    except AMQPError as e:
        assert 500 <= e.reply_code <= 541 or e.reply_code == PRECONDITION_FAILED


def test_method_frame_inside_content_is_unexpected() -> None:
    """A METHOD frame before a pending content's header is 505."""
    assembler = CommandAssembler()
    assert assembler.feed(FRAME_METHOD, 1, encode_method(BasicPublish())) is None
    with pytest.raises(HardError) as info:
        assembler.feed(FRAME_METHOD, 1, encode_method(BasicAck(1)))
    assert info.value.reply_code == UNEXPECTED_FRAME


def test_content_frames_interleave_across_channels() -> None:
    """Content of two channels may interleave; each assembles on its own."""
    assembler = CommandAssembler()
    assert assembler.feed(FRAME_METHOD, 1, encode_method(BasicPublish(routing_key="a"))) is None
    assert assembler.feed(FRAME_METHOD, 2, encode_method(BasicPublish(routing_key="b"))) is None
    assert assembler.feed(FRAME_HEADER, 2, encode_header(2, BasicProperties())) is None
    assert assembler.feed(FRAME_HEADER, 1, encode_header(1, BasicProperties())) is None
    two = assembler.feed(FRAME_BODY, 2, b"bb")
    one = assembler.feed(FRAME_BODY, 1, b"a")
    assert two is not None and (two.channel, two.body) == (2, b"bb")
    assert one is not None and (one.channel, one.body) == (1, b"a")


def test_body_frame_without_method_is_unexpected() -> None:
    """A BODY frame with no content method before it is 505."""
    with pytest.raises(HardError) as info:
        CommandAssembler().feed(FRAME_BODY, 1, b"x")
    assert info.value.reply_code == UNEXPECTED_FRAME


def test_body_longer_than_declared_is_frame_error() -> None:
    """A body exceeding its declared size is 501."""
    assembler = CommandAssembler()
    assembler.feed(FRAME_METHOD, 1, encode_method(BasicPublish()))
    assembler.feed(FRAME_HEADER, 1, encode_header(3, BasicProperties()))
    with pytest.raises(HardError) as info:
        assembler.feed(FRAME_BODY, 1, b"four")
    assert info.value.reply_code == FRAME_ERROR


def test_oversize_body_closes_channel_only() -> None:
    """A declared body above max_body_bytes is a 406 channel error naming the sizes."""
    assembler = CommandAssembler(max_body_bytes=1000)
    assembler.feed(FRAME_METHOD, 3, encode_method(BasicPublish()))
    with pytest.raises(ChannelError) as info:
        assembler.feed(FRAME_HEADER, 3, encode_header(1001, BasicProperties()))
    assert info.value.reply_code == PRECONDITION_FAILED
    assert info.value.channel == 3
    assert "1001" in info.value.reply_text
    # the channel is clean again for its next command
    assert assembler.feed(FRAME_METHOD, 3, encode_method(BasicAck(1))) is not None


def test_deliver_frames_encode_fields_positionally() -> None:
    """basic.deliver is a CBOR array of class, method and five fields."""
    payload = encode_method(BasicDeliver("ctag", 7, True, "ex", "rk"))
    assert cbor2.loads(payload) == [60, 60, "ctag", 7, True, "ex", "rk"]


def test_table_defaults_are_independent() -> None:
    """Default argument tables are fresh per method (no shared mutable default)."""
    a, b = QueueDeclare("a"), QueueDeclare("b")
    assert a.arguments is not b.arguments
    assert attrs.fields(QueueDeclare).arguments.default is not None


def test_frame_decoder_rejects_header_frame_above_max() -> None:
    """HEADER frames obey frame_max like any other."""
    with pytest.raises(HardError):
        FrameDecoder(4096).feed(encode_frame(FRAME_HEADER, 1, b"x" * 5000))
