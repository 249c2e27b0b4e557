"""Bad input against the real broker: each gets its reply code, and nobody else notices.

Every case runs while a bystander connection keeps publishing and fetching
messages; after each case the bystander's messages must all arrive intact.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import cbor2
import pytest

from amqplike.client.sync import BlockingConnection
from amqplike.errors import (
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_ERROR,
    PRECONDITION_FAILED,
    SYNTAX_ERROR,
)
from amqplike.properties import BasicProperties
from amqplike.wire import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    PROTOCOL_HEADER,
    encode_frame,
    encode_header,
    encode_method,
)
from amqplike.wire.methods import (
    BasicPublish,
    ChannelClose,
    ChannelOpen,
    ChannelOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    QueueDeclare,
    QueueDeclareOk,
)
from tests.e2e.broker import BrokerProcess
from tests.e2e.rawclient import RawClient


@pytest.fixture(scope="module")
def bystander(broker: BrokerProcess) -> Iterator[Callable[[], None]]:
    """A well-behaved client; calling the fixture's value checks a publish/get round trip."""
    connection = BlockingConnection(broker.url)
    channel = connection.channel()
    queue = channel.queue_declare(queue="", exclusive=True).method.queue

    def round_trip() -> None:
        bodies = [uuid.uuid4().bytes * 10 for _ in range(20)]
        for body in bodies:
            channel.basic_publish(exchange="", routing_key=queue, body=body)
        got = []
        for _ in bodies:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None
            got.append(body)
        assert got == bodies

    round_trip()
    yield round_trip
    connection.close()


def _connection_close_code(raw: RawClient) -> int:
    """Wait for the server's connection.close, answer it as a client would, return its code."""
    while True:
        command = raw.read_command()
        assert command is not None, "socket closed without connection.close"
        if isinstance(command.method, ConnectionClose):
            break
    try:
        raw.send_method(0, ConnectionCloseOk())
    except OSError:
        pass  # framing errors drop the socket at once; nothing to answer
    assert raw.read_until_closed() == []
    return command.method.reply_code


def test_garbage_instead_of_protocol_header(broker: BrokerProcess, bystander: Callable[[], None]) -> None:
    """Garbage before the handshake is answered with our protocol header and a close."""
    raw = RawClient(broker.port)
    raw.send(b"GET / HTTP/1.1\r\n\r\n")
    data = b""
    while chunk := raw.sock.recv(100):
        data += chunk
    assert data == PROTOCOL_HEADER
    bystander()


def test_amqp_091_header_is_refused(broker: BrokerProcess, bystander: Callable[[], None]) -> None:
    """A real AMQP 0-9-1 client is told which protocol this is and disconnected."""
    raw = RawClient(broker.port)
    raw.send(b"AMQP\x00\x00\x09\x01")
    assert raw.sock.recv(100) == PROTOCOL_HEADER
    bystander()


def _bad_frames() -> dict[str, tuple[bytes, int]]:
    declare = encode_method(QueueDeclare("q"))
    return {
        "frame over frame_max": (bytes([FRAME_METHOD, 0, 1]) + (2**32 - 1).to_bytes(4, "big"), FRAME_ERROR),
        "truncated frame": (
            bytes([FRAME_METHOD, 0, 1]) + (10).to_bytes(4, "big") + b"abc" + encode_frame(FRAME_METHOD, 1, declare),
            FRAME_ERROR,
        ),
        "invalid CBOR": (encode_frame(FRAME_METHOD, 1, b"\xff\xfe\xfd"), FRAME_ERROR),
        "CBOR bomb": (encode_frame(FRAME_METHOD, 1, b"\x81" * 5000), FRAME_ERROR),
        "unknown method": (encode_frame(FRAME_METHOD, 1, cbor2.dumps([60, 250])), COMMAND_INVALID),
        "method on an unopened channel": (encode_frame(FRAME_METHOD, 9, declare), CHANNEL_ERROR),
        "wrong field types": (
            encode_frame(FRAME_METHOD, 1, cbor2.dumps([50, 10, 7, "no", 0, 0, 0, 0, []])),
            SYNTAX_ERROR,
        ),
        "body longer than declared": (
            encode_frame(FRAME_METHOD, 1, encode_method(BasicPublish("", "q")))
            + encode_frame(FRAME_HEADER, 1, encode_header(3, BasicProperties()))
            + encode_frame(FRAME_BODY, 1, b"four"),
            FRAME_ERROR,
        ),
    }


@pytest.mark.parametrize("case", sorted(_bad_frames()))
def test_bad_frame_closes_connection_with_code(
    case: str, broker: BrokerProcess, bystander: Callable[[], None]
) -> None:
    """Each malformed input closes only its own connection, with AMQP's reply code."""
    data, code = _bad_frames()[case]
    raw = RawClient(broker.port)
    raw.handshake()
    raw.send(data)
    assert _connection_close_code(raw) == code
    bystander()


def test_oversize_body_closes_channel_only(broker: BrokerProcess, bystander: Callable[[], None]) -> None:
    """A body above the broker's limit closes the channel with 406; the connection lives on."""
    raw = RawClient(broker.port)
    raw.handshake()
    raw.send(
        encode_frame(FRAME_METHOD, 1, encode_method(BasicPublish("", "q")))
        + encode_frame(FRAME_HEADER, 1, encode_header(2**40, BasicProperties()))
    )
    close = raw.expect(ChannelClose)
    assert isinstance(close, ChannelClose)
    assert close.reply_code == PRECONDITION_FAILED
    assert "larger than configured max size" in close.reply_text
    from amqplike.wire.methods import ChannelCloseOk

    raw.send_method(1, ChannelCloseOk())
    raw.send_method(1, ChannelOpen())
    raw.expect(ChannelOpenOk)
    raw.send_method(1, QueueDeclare("", exclusive=True))
    raw.expect(QueueDeclareOk)
    raw.close()
    bystander()


def test_log_names_each_protocol_error(broker: BrokerProcess, bystander: Callable[[], None]) -> None:
    """Protocol errors are logged with their code; no traceback (bug) appears in the log."""
    raw = RawClient(broker.port)
    raw.handshake()
    raw.send(encode_frame(FRAME_METHOD, 1, cbor2.dumps([60, 250])))
    assert _connection_close_code(raw) == COMMAND_INVALID
    bystander()
    log = broker.log_text()
    assert "503" in log
    assert "Traceback" not in log
