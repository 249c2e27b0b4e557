"""The server over real loopback TCP on port 0, driven by the reactor (no sleeps)."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, endpoints, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort

from amqplike.core import Broker
from amqplike.server import BrokerFactory
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
    BasicAck,
    BasicConsume,
    BasicDeliver,
    BasicPublish,
    ChannelOpen,
    ConfirmSelect,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionStartOk,
    ConnectionTuneOk,
    Method,
    QueueDeclare,
)


class _RawClient(protocol.Protocol):
    """Collects commands; ``next()`` fires with the next one (None at disconnect)."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder(1 << 20)
        self.assembler = CommandAssembler()
        self.commands: list[Command | None] = []
        self.waiting: list[defer.Deferred[Command | None]] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        for frame_type, channel, payload in self.decoder.feed(data):
            if frame_type != FRAME_HEARTBEAT:
                command = self.assembler.feed(frame_type, channel, payload)
                if command is not None:
                    self._push(command)

    def connectionLost(self, reason: Any = None) -> None:
        self._push(None)
        self.lost.callback(None)

    def _push(self, command: Command | None) -> None:
        if self.waiting:
            self.waiting.pop(0).callback(command)
        else:
            self.commands.append(command)

    def next(self) -> defer.Deferred[Command | None]:
        if self.commands:
            return defer.succeed(self.commands.pop(0))
        d: defer.Deferred[Command | None] = defer.Deferred()
        self.waiting.append(d)
        return d

    def send(self, channel: int, method: Method) -> None:
        assert self.transport is not None
        self.transport.write(encode_method_frame(channel, method))


async def _method(client: _RawClient) -> Method:
    command = await client.next()
    assert command is not None
    return command.method


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_publish_confirm_consume_over_tcp() -> None:
    """Handshake, confirmed publishes and deliveries over a real socket, then a clean close."""
    from twisted.internet import reactor

    factory = BrokerFactory(Broker(), reactor)
    port: IListeningPort = await endpoints.TCP4ServerEndpoint(
        reactor, 0, interface="127.0.0.1"
    ).listen(factory)
    try:
        client = _RawClient()
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        await endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), client
        )
        assert client.transport is not None
        client.transport.write(PROTOCOL_HEADER)
        await _method(client)
        client.send(0, ConnectionStartOk({}, "PLAIN", b"\0guest\0guest", "en_US"))
        await _method(client)
        client.send(0, ConnectionTuneOk(0, 131072, 0))
        client.send(0, ConnectionOpen("/"))
        await _method(client)
        client.send(1, ChannelOpen())
        client.send(1, QueueDeclare("q"))
        client.send(1, ConfirmSelect())
        client.send(1, BasicConsume("q", "c", no_ack=True))
        for _ in range(4):
            await _method(client)
        n = 200
        client.transport.write(
            b"".join(encode_command(1, BasicPublish("", "q"), None, b"%d" % i) for i in range(n))
        )
        bodies: list[bytes] = []
        acked = 0
        while len(bodies) < n or acked < n:
            command = await client.next()
            assert command is not None
            if isinstance(command.method, BasicDeliver):
                bodies.append(command.body)
            elif isinstance(command.method, BasicAck):
                acked = command.method.delivery_tag
        assert bodies == [b"%d" % i for i in range(n)]
        client.send(0, ConnectionClose(200, "bye", 0, 0))
        assert isinstance(await _method(client), ConnectionCloseOk)
        await client.lost
    finally:
        await defer.maybeDeferred(port.stopListening)
    assert factory.connections == set()
