"""The server side of the connection handshake (docs/protocol.md, section 6)."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv6Address, UNIXAddress
from twisted.internet.task import Clock

from amqplike.core import Broker
from amqplike.errors import ACCESS_REFUSED, COMMAND_INVALID, FRAME_ERROR, NOT_ALLOWED
from amqplike.server import BrokerFactory
from amqplike.server.protocol import LOGIN_REFUSED_TEXT, is_loopback
from amqplike.wire import PROTOCOL_HEADER
from amqplike.wire.methods import (
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
)
from tests.server._client import LOOPBACK, REMOTE, TestClient, make_factory, plain


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_full_handshake(factory: BrokerFactory, byte_by_byte: bool) -> None:
    """Header, start/start-ok, tune/tune-ok and open/open-ok complete, whole or byte by byte."""
    client = TestClient(factory, byte_by_byte=byte_by_byte)
    tune = client.handshake()
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
    assert client.protocol.user == "guest"
    assert client.protocol.vhost == "/"
    assert not client.closed


def test_start_advertises_plain_and_capabilities(client: TestClient) -> None:
    """``connection.start`` offers PLAIN and RabbitMQ's capability flags."""
    client.send_raw(PROTOCOL_HEADER)
    start = client.expect(ConnectionStart, 0)
    assert start.mechanisms == "PLAIN"
    assert start.server_properties["capabilities"]["publisher_confirms"] is True


@pytest.mark.parametrize(
    "header", [b"AMQP\x00\x00\x09\x01", b"GET / HTTP/1.1\r\n", b"AMQPLIKE\x00\x02"]
)
def test_bad_protocol_header(client: TestClient, header: bytes) -> None:
    """A wrong header is answered with ours and the socket is closed."""
    client.send_raw(header)
    assert client.transport.value() == PROTOCOL_HEADER
    assert client.closed


def test_bad_header_detected_on_first_wrong_byte(client: TestClient) -> None:
    """The server does not wait for 10 bytes once the prefix is already wrong."""
    client.send_raw(b"X")
    assert client.transport.value() == PROTOCOL_HEADER
    assert client.closed


def test_header_followed_by_frames_in_one_read(client: TestClient) -> None:
    """Bytes after the protocol header in the same read are handled as frames."""
    from amqplike.wire import encode_method_frame

    client.send_raw(
        PROTOCOL_HEADER
        + encode_method_frame(0, ConnectionStartOk({}, "PLAIN", plain("guest", "guest"), "en_US"))
    )
    methods = client.methods()
    assert [type(m) for m in methods] == [ConnectionStart, ConnectionTune]


def _login(client: TestClient, user: str, password: str) -> ConnectionClose:
    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionStartOk({}, "PLAIN", plain(user, password), "en_US"))
    return client.expect(ConnectionClose, 0)


def test_bad_credentials_same_text(factory: BrokerFactory) -> None:
    """An unknown user and a wrong password get the very same 403 (RELIABILITY S1)."""
    unknown = _login(TestClient(factory), "nobody", "guest")
    wrong = _login(TestClient(factory), "guest", "wrong")
    assert unknown.reply_code == wrong.reply_code == ACCESS_REFUSED
    assert unknown.reply_text == wrong.reply_text == LOGIN_REFUSED_TEXT


def test_malformed_plain_response_refused_like_bad_password(client: TestClient) -> None:
    """A PLAIN response that is not NUL user NUL password is just a refused login."""
    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionStartOk({}, "PLAIN", b"guest:guest", "en_US"))
    close = client.expect(ConnectionClose)
    assert close.reply_text == LOGIN_REFUSED_TEXT


def test_refused_login_then_close_ok_drops(client: TestClient) -> None:
    """After a refused login the server drops the socket when the client answers close-ok."""
    _login(client, "guest", "nope")
    assert not client.closed
    client.send(0, ConnectionCloseOk())
    assert client.closed


def test_unknown_mechanism(client: TestClient) -> None:
    """A mechanism other than PLAIN is 503, as RabbitMQ answers."""
    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionStartOk({}, "AMQPLAIN", plain("guest", "guest"), "en_US"))
    assert client.expect(ConnectionClose).reply_code == COMMAND_INVALID


def test_guest_refused_from_remote_peer(factory: BrokerFactory) -> None:
    """``guest`` may log in from loopback only; a remote peer gets a 403 naming the reason."""
    client = TestClient(factory, peer=REMOTE)
    close = _login(client, "guest", "guest")
    assert close.reply_code == ACCESS_REFUSED
    assert close.reply_text == "ACCESS_REFUSED - user 'guest' can only connect via localhost"


def test_other_user_allowed_from_remote_peer(clock: Clock) -> None:
    """Users other than guest may log in from anywhere."""
    broker = Broker()
    broker.add_user("alice", "s3cret")
    client = TestClient(make_factory(broker, clock), peer=REMOTE)
    client.handshake("alice", "s3cret")
    assert client.protocol.user == "alice"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (LOOPBACK, True),
        (REMOTE, False),
        (IPv6Address("TCP", "::1", 1), True),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 1), True),
        (IPv6Address("TCP", "fe80::1%eth0", 1), False),
        (UNIXAddress(b"/tmp/amqplike.sock"), True),
        (UNIXAddress(None), True),
    ],
)
def test_is_loopback(address: object, expected: bool) -> None:
    """Loopback means 127/8, ::1 (also IPv4-mapped) and UNIX sockets."""
    assert is_loopback(address) is expected  # type: ignore[arg-type]


def test_unknown_vhost(client: TestClient) -> None:
    """``connection.open`` of an unknown vhost is 530 NOT_ALLOWED."""
    from amqplike.wire.methods import ConnectionOpen

    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionStartOk({}, "PLAIN", plain("guest", "guest"), "en_US"))
    client.expect(ConnectionTune)
    client.send(0, ConnectionTuneOk(0, 131072, 60))
    client.send(0, ConnectionOpen("/nope"))
    close = client.expect(ConnectionClose)
    assert close.reply_code == NOT_ALLOWED
    assert (close.class_id, close.method_id) == (10, 40)


@pytest.mark.parametrize(
    ("tune_ok", "code"),
    [
        (ConnectionTuneOk(0, 131073, 60), FRAME_ERROR),
        (ConnectionTuneOk(0, 4095, 60), FRAME_ERROR),
        (ConnectionTuneOk(0, 0, 60), FRAME_ERROR),
        (ConnectionTuneOk(2048, 131072, 60), COMMAND_INVALID),
        (ConnectionTuneOk(0, 131072, 61), COMMAND_INVALID),
    ],
)
def test_tune_ok_above_server_values(
    client: TestClient, tune_ok: ConnectionTuneOk, code: int
) -> None:
    """tune-ok values above the server's (or frame_max under 4096) close the connection."""
    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionStartOk({}, "PLAIN", plain("guest", "guest"), "en_US"))
    client.expect(ConnectionTune)
    client.send(0, tune_ok)
    assert client.expect(ConnectionClose).reply_code == code


def test_tune_ok_lowers_limits(client: TestClient) -> None:
    """Lower client values are the negotiated ones; channel_max 0 means the server's."""
    client.handshake(heartbeat=0, frame_max=8192, channel_max=0)
    assert client.protocol.frame_max == 8192
    assert client.protocol.channel_max == 2047
    assert client.protocol.heartbeat == 0


def test_method_out_of_order(client: TestClient) -> None:
    """``connection.open`` before ``start-ok`` is 503."""
    from amqplike.wire.methods import ConnectionOpen

    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionOpen("/"))
    close = client.expect(ConnectionClose)
    assert close.reply_code == COMMAND_INVALID
    assert "expected 'connection.start-ok'" in close.reply_text


def test_handshake_timeout(client: TestClient, clock: Clock) -> None:
    """A client that does not finish the handshake in 10 s is dropped."""
    client.send_raw(PROTOCOL_HEADER[:4])
    clock.advance(9.9)
    assert not client.closed
    clock.advance(0.2)
    assert client.closed
    assert client.transport.disconnected  # aborted, not waiting for a flush
    client.disconnect()
    assert clock.getDelayedCalls() == []


def test_handshake_timer_cancelled_when_open(client: TestClient, clock: Clock) -> None:
    """After open-ok only the heartbeat timer remains; nothing drops the client at 10 s."""
    client.handshake(heartbeat=0)
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert not client.closed


def test_client_close_during_handshake(client: TestClient) -> None:
    """A client may close during the handshake: close-ok, then the socket is dropped."""
    client.send_raw(PROTOCOL_HEADER)
    client.expect(ConnectionStart)
    client.send(0, ConnectionClose(200, "bye", 0, 0))
    client.expect(ConnectionCloseOk, 0)
    assert client.closed


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (LOOPBACK, "127.0.0.1:40000"),
        (IPv6Address("TCP", "::1", 5), "[::1]:5"),
        (UNIXAddress(b"/run/a.sock"), "unix:/run/a.sock"),
    ],
)
def test_describe_peer(address: object, text: str) -> None:
    """Peers are written in log lines as host:port, [v6]:port or unix:path."""
    from amqplike.server.protocol import describe_peer

    assert describe_peer(address) == text  # type: ignore[arg-type]
