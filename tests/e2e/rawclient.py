"""A raw socket peer speaking the wire protocol by hand, to send what no real client would."""

from __future__ import annotations

import socket

from amqplike.wire import (
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    PROTOCOL_HEADER,
    Command,
    CommandAssembler,
    FrameDecoder,
    encode_method_frame,
)
from amqplike.wire.methods import (
    ChannelOpen,
    ConnectionOpen,
    ConnectionStartOk,
    ConnectionTuneOk,
    Method,
)


class RawClient:
    """A blocking, hand-driven protocol peer for bad-input tests."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = FrameDecoder(1 << 20)
        self.assembler = CommandAssembler()
        self.pending: list[Command] = []
        self.eof = False

    def send(self, data: bytes) -> None:
        """Write raw bytes."""
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Method) -> None:
        """Write one method frame."""
        self.send(encode_method_frame(channel, method))

    def read_command(self) -> Command | None:
        """Return the next command from the server, or None at end of stream."""
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                return None
            for frame_type, channel, payload in self.decoder.feed(data):
                if frame_type == FRAME_HEARTBEAT:
                    continue
                command = self.assembler.feed(frame_type, channel, payload)
                if command is not None:
                    self.pending.append(command)
        return self.pending.pop(0)

    def expect(self, method_type: type[Method]) -> Method:
        """Read the next command and check it is a ``method_type``."""
        command = self.read_command()
        assert command is not None, f"connection closed while waiting for {method_type.NAME}"
        assert isinstance(command.method, method_type), command.method
        return command.method

    def read_until_closed(self) -> list[Command]:
        """Read everything until the server closes the socket."""
        out = []
        while True:
            command = self.read_command()
            if command is None:
                return out
            out.append(command)

    def handshake(self, user: str = "guest", password: str = "guest", vhost: str = "/") -> None:
        """Open the connection and channel 1."""
        from amqplike.wire.methods import (
            ChannelOpenOk,
            ConnectionOpenOk,
            ConnectionStart,
            ConnectionTune,
        )

        self.send(PROTOCOL_HEADER)
        self.expect(ConnectionStart)
        response = b"\0" + user.encode() + b"\0" + password.encode()
        self.send_method(0, ConnectionStartOk({}, "PLAIN", response, "en_US"))
        tune = self.expect(ConnectionTune)
        assert isinstance(tune, ConnectionTune)
        self.send_method(0, ConnectionTuneOk(tune.channel_max, tune.frame_max, 0))
        self.decoder.frame_max = tune.frame_max
        self.send_method(0, ConnectionOpen(vhost))
        self.expect(ConnectionOpenOk)
        self.send_method(1, ChannelOpen())
        self.expect(ChannelOpenOk)

    def close(self) -> None:
        """Drop the socket."""
        self.sock.close()


__all__ = ["FRAME_METHOD", "RawClient"]
