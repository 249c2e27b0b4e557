"""Hypothesis-generated garbage against a live server protocol (RELIABILITY P1)."""

from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from amqplike.errors import REPLY_NAMES
from amqplike.wire import encode_frame
from amqplike.wire.methods import ConnectionClose, QueueDeclare, QueueDeclareOk
from tests.server._client import TestClient, make_factory

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
_method_payloads = st.builds(
    lambda c, m, rest: bytes(cbor2.dumps([c, m, *rest])),
    st.sampled_from([10, 20, 40, 50, 60, 85, 99]),
    st.integers(0, 130),
    st.lists(_values, max_size=8),
)
_frames = st.builds(
    encode_frame,
    st.sampled_from([1, 2, 3, 8]),
    st.integers(0, 4),
    _method_payloads | st.binary(max_size=40),
)
_chunks = st.lists(_frames | st.binary(min_size=1, max_size=30), min_size=1, max_size=12)


@settings(max_examples=300)
@given(chunks=_chunks, byte_by_byte=st.booleans())
def test_garbage_only_yields_protocol_errors(chunks: list[bytes], byte_by_byte: bool) -> None:
    """Any input ends in a protocol reply code or nothing; no bug escapes; a neighbour is unharmed."""
    factory = make_factory()
    neighbour = TestClient(factory)
    neighbour.handshake()
    neighbour.open_channel(1)
    victim = TestClient(factory, byte_by_byte=byte_by_byte)
    victim.handshake()
    victim.open_channel(1)
    for chunk in chunks:
        victim.send_raw(chunk)
    for method in victim.methods():
        if isinstance(method, ConnectionClose):
            assert method.reply_code in REPLY_NAMES
            assert method.reply_code != 541, method
    assert victim.protocol._decoder.buffered_bytes <= victim.protocol.frame_max
    victim.disconnect()
    neighbour.send(1, QueueDeclare("still-ok"))
    assert neighbour.expect(QueueDeclareOk).queue == "still-ok"
