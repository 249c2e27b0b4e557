"""A scripted server for client tests: builds server frames and reads what the client sent."""

from __future__ import annotations

from typing import Any

from amqplike.properties import BasicProperties
from amqplike.wire import (
    FRAME_HEARTBEAT,
    PROTOCOL_HEADER,
    Command,
    CommandAssembler,
    FrameDecoder,
    encode_command,
)
from amqplike.wire import methods as m

SERVER_PROPERTIES: dict[str, Any] = {
    "product": "amqplike",
    "capabilities": {
        "publisher_confirms": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "exchange_exchange_bindings": True,
    },
}


def frames(
    channel: int, method: m.Method, properties: BasicProperties | None = None, body: bytes = b""
) -> bytes:
    """Encode one server command."""
    return encode_command(channel, method, properties, body)


class ClientReader:
    """Decodes the bytes a client wrote, as the server side would."""

    def __init__(self) -> None:
        self.header = b""
        self.heartbeats = 0
        self._decoder = FrameDecoder(1 << 20)
        self._assembler = CommandAssembler()

    def feed(self, data: bytes) -> list[Command]:
        """Return the commands in ``data`` (the protocol header is taken off first)."""
        if len(self.header) < len(PROTOCOL_HEADER):
            need = len(PROTOCOL_HEADER) - len(self.header)
            self.header += data[:need]
            data = data[need:]
        out: list[Command] = []
        for frame_type, channel, payload in self._decoder.feed(data):
            if frame_type == FRAME_HEARTBEAT:
                self.heartbeats += 1
                continue
            command = self._assembler.feed(frame_type, channel, payload)
            if command is not None:
                out.append(command)
        return out


def handshake_replies(heartbeat: int = 0, frame_max: int = 131072) -> list[bytes]:
    """The server's side of a successful handshake, one element per step."""
    return [
        frames(0, m.ConnectionStart(0, 1, SERVER_PROPERTIES, "PLAIN", "en_US")),
        frames(0, m.ConnectionTune(2047, frame_max, heartbeat)),
        frames(0, m.ConnectionOpenOk()),
    ]
