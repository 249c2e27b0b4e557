"""A client side for protocol tests: speaks the wire codec to an in-memory server."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from amqplike.core import Broker
from amqplike.properties import EMPTY_PROPERTIES, BasicProperties
from amqplike.server import AMQPServerProtocol, BrokerFactory, ServerLimits
from amqplike.wire import (
    FRAME_HEARTBEAT,
    PROTOCOL_HEADER,
    Command,
    CommandAssembler,
    FrameDecoder,
    encode_command,
    encode_method_frame,
)
from amqplike.wire.methods import (
    BasicPublish,
    ChannelOpen,
    ChannelOpenOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Method,
)

M = TypeVar("M", bound=Method)

#: Stands for a heartbeat frame in :meth:`TestClient.received`.
HEARTBEAT = "heartbeat"

LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)
REMOTE = IPv4Address("TCP", "192.0.2.7", 40000)


def plain(user: str, password: str) -> bytes:
    """A SASL PLAIN response."""
    return b"\0" + user.encode() + b"\0" + password.encode()


class TestClient:
    """Drives one :class:`AMQPServerProtocol` over a ``StringTransport``."""

    __test__ = False

    def __init__(
        self,
        factory: BrokerFactory,
        peer: IPv4Address = LOOPBACK,
        *,
        byte_by_byte: bool = False,
    ) -> None:
        self.factory = factory
        self.transport = StringTransport(peerAddress=peer)
        protocol = factory.buildProtocol(peer)
        assert isinstance(protocol, AMQPServerProtocol)
        self.protocol = protocol
        self.protocol.makeConnection(self.transport)
        self.byte_by_byte = byte_by_byte
        self._decoder = FrameDecoder(1 << 30)
        self._assembler = CommandAssembler(1 << 30)
        self._read = 0
        self.frame_max = 131072

    # -- sending -------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Hand ``data`` to the server, whole or one byte at a time."""
        if self.byte_by_byte:
            for i in range(len(data)):
                self.protocol.dataReceived(data[i : i + 1])
        else:
            self.protocol.dataReceived(data)

    def send(self, channel: int, method: Method) -> None:
        """Send one method frame."""
        self.send_raw(encode_method_frame(channel, method))

    def publish(
        self,
        channel: int,
        body: bytes,
        routing_key: str = "",
        exchange: str = "",
        properties: BasicProperties = EMPTY_PROPERTIES,
        mandatory: bool = False,
    ) -> None:
        """Send a ``basic.publish`` with its content."""
        self.send_raw(
            self.encode_publish(channel, body, routing_key, exchange, properties, mandatory)
        )

    def encode_publish(
        self,
        channel: int,
        body: bytes,
        routing_key: str = "",
        exchange: str = "",
        properties: BasicProperties = EMPTY_PROPERTIES,
        mandatory: bool = False,
    ) -> bytes:
        """The frames of a publish, for batching several into one read."""
        return encode_command(
            channel,
            BasicPublish(exchange, routing_key, mandatory, False),
            properties,
            body,
            self.frame_max,
        )

    # -- receiving -----------------------------------------------------------------

    def received(self) -> list[Any]:
        """Commands (and ``HEARTBEAT`` markers) the server wrote since the last call."""
        data = self.transport.value()[self._read :]
        self._read += len(data)
        out: list[Any] = []
        for frame_type, channel, payload in self._decoder.feed(data):
            if frame_type == FRAME_HEARTBEAT:
                out.append(HEARTBEAT)
                continue
            command = self._assembler.feed(frame_type, channel, payload)
            if command is not None:
                out.append(command)
        return out

    def methods(self) -> list[Method]:
        """The methods of :meth:`received` (heartbeats left out)."""
        return [c.method for c in self.received() if isinstance(c, Command)]

    def expect(self, method_type: type[M], channel: int | None = None) -> M:
        """Check that exactly one command arrived and it is a ``method_type``."""
        commands = [c for c in self.received() if c != HEARTBEAT]
        assert len(commands) == 1, commands
        command = commands[0]
        assert isinstance(command.method, method_type), command.method
        if channel is not None:
            assert command.channel == channel
        return command.method

    # -- conversations ---------------------------------------------------------------

    def handshake(
        self,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        heartbeat: int | None = None,
        frame_max: int | None = None,
        channel_max: int = 0,
        client_properties: dict[str, Any] | None = None,
    ) -> ConnectionTune:
        """Run the handshake up to ``connection.open-ok``; return the server's tune."""
        self.send_raw(PROTOCOL_HEADER)
        self.expect(ConnectionStart, 0)
        self.send(
            0,
            ConnectionStartOk(
                client_properties or {}, "PLAIN", plain(user, password), "en_US"
            ),
        )
        tune = self.expect(ConnectionTune, 0)
        self.frame_max = frame_max if frame_max is not None else tune.frame_max
        self.send(
            0,
            ConnectionTuneOk(
                channel_max,
                self.frame_max,
                tune.heartbeat if heartbeat is None else heartbeat,
            ),
        )
        self.send(0, ConnectionOpen(vhost))
        self.expect(ConnectionOpenOk, 0)
        return tune

    def open_channel(self, number: int = 1) -> None:
        """Open channel ``number`` and check the answer."""
        self.send(number, ChannelOpen())
        self.expect(ChannelOpenOk, number)

    def disconnect(self) -> None:
        """The socket goes away (as the reactor would report it)."""
        self.protocol.connectionLost(Failure(ConnectionResetError("reset by test")))

    @property
    def closed(self) -> bool:
        """True once the server asked the transport to close."""
        return bool(self.transport.disconnecting)


def make_factory(
    broker: Broker | None = None, clock: Clock | None = None, **limits: Any
) -> BrokerFactory:
    """A factory over a fresh broker and a fake clock."""
    return BrokerFactory(
        broker if broker is not None else Broker(),
        clock if clock is not None else Clock(),
        ServerLimits(**limits),
    )
