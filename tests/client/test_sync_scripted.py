"""The blocking client against a scripted server on a socketpair.

Each server reply is written into the socket just before the client call
that waits for it, so no thread is needed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from amqplike.client.exceptions import (
    ConnectionClosedByBroker,
    ConnectionWrongStateError,
    IncompatibleProtocolError,
    NackError,
    StreamLostError,
)
from amqplike.client.rpc import RpcServer
from amqplike.client.sync import BlockingConnection, MethodFrame
from amqplike.properties import BasicProperties
from amqplike.wire import methods as m
from tests.client.scripted import ClientReader, frames, handshake_replies


class ScriptedServer:
    """The far end of the client's socket."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server_end, client_end = socket.socketpair()
        self.reader = ClientReader()
        monkeypatch.setattr(BlockingConnection, "_connect", lambda _self: client_end)

    def script(self, *chunks: bytes) -> None:
        """Queue server bytes for the client to read."""
        self.server_end.sendall(b"".join(chunks))

    def received(self) -> list[m.Method]:
        """The methods the client sent so far."""
        self.server_end.setblocking(False)
        data = b""
        try:
            while chunk := self.server_end.recv(65536):
                data += chunk
        except BlockingIOError:
            pass
        return [c.method for c in self.reader.feed(data)]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """A scripted server; its socket is closed after the test."""
    s = ScriptedServer(monkeypatch)
    yield s
    s.server_end.close()


def test_nack_raises_nack_error(server: ScriptedServer) -> None:
    """In confirm mode a basic.nack from the broker raises NackError from basic_publish."""
    server.script(*handshake_replies())
    conn = BlockingConnection()
    server.script(frames(1, m.ChannelOpenOk()))
    ch = conn.channel()
    server.script(frames(1, m.ConfirmSelectOk()))
    ch.confirm_delivery()
    server.script(frames(1, m.BasicNack(1, False, False)))
    with pytest.raises(NackError) as info:
        ch.basic_publish("", "q", b"x")
    assert info.value.messages == []
    assert m.BasicPublish("", "q", False, False) in server.received()
    server.script(frames(0, m.ConnectionCloseOk()))
    conn.close()


def test_blocked_and_unblocked_callbacks(server: ScriptedServer) -> None:
    """connection.blocked/unblocked reach their callbacks from process_data_events."""
    server.script(*handshake_replies())
    conn = BlockingConnection()
    seen: list[tuple[str, MethodFrame]] = []
    conn.add_on_connection_blocked_callback(lambda c, f: seen.append(("blocked", f)))
    conn.add_on_connection_unblocked_callback(lambda c, f: seen.append(("unblocked", f)))
    server.script(
        frames(0, m.ConnectionBlocked("low on memory")), frames(0, m.ConnectionUnblocked())
    )
    while len(seen) < 2:
        conn.process_data_events(time_limit=None)
    assert [name for name, _ in seen] == ["blocked", "unblocked"]
    assert seen[0][1].method == m.ConnectionBlocked("low on memory")
    server.script(frames(0, m.ConnectionCloseOk()))
    conn.close()
    assert m.ConnectionClose(200, "Normal shutdown", 0, 0) in server.received()


def test_broker_close_raises_once_then_wrong_state(server: ScriptedServer) -> None:
    """A broker connection.close is answered, raised once, then calls are ConnectionWrongStateError."""
    server.script(*handshake_replies())
    conn = BlockingConnection()
    server.script(frames(0, m.ConnectionClose(320, "CONNECTION_FORCED - broker shutdown", 0, 0)))
    with pytest.raises(ConnectionClosedByBroker) as info:
        conn.process_data_events(time_limit=None)
    assert info.value.reply_code == 320
    assert conn.is_closed
    assert m.ConnectionCloseOk() in server.received()
    with pytest.raises(ConnectionWrongStateError):
        conn.channel()


def test_lost_socket_raises_stream_lost(server: ScriptedServer) -> None:
    """The server vanishing without a close handshake raises StreamLostError."""
    server.script(*handshake_replies())
    conn = BlockingConnection()
    server.server_end.shutdown(socket.SHUT_RDWR)
    with pytest.raises(StreamLostError):
        conn.channel()


def test_other_protocol_version_is_refused(server: ScriptedServer) -> None:
    """A server answering with another protocol header fails the constructor clearly."""
    server.script(b"AMQP\x00\x00\x09\x01")
    with pytest.raises(IncompatibleProtocolError):
        BlockingConnection()


def test_rpc_server_writes_reply_and_ack_together(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RpcServer answers a request with one write: the reply, then the request's ack."""
    server.script(*handshake_replies())
    conn = BlockingConnection()
    server.script(frames(1, m.ChannelOpenOk()))
    ch = conn.channel()
    server.script(frames(1, m.BasicConsumeOk("ctag")))
    rpc = RpcServer(ch, "rpc", lambda body, _props: body.upper())
    server.received()
    writes: list[int] = []
    flush = BlockingConnection._flush

    def counting_flush(self: BlockingConnection) -> None:
        if self._engine.pending_output_bytes:
            writes.append(self._engine.pending_output_bytes)
        flush(self)

    monkeypatch.setattr(BlockingConnection, "_flush", counting_flush)
    request = BasicProperties(correlation_id="c1", reply_to="replies")
    server.script(frames(1, m.BasicDeliver(rpc.consumer_tag, 7, False, "", "rpc"), request, b"hi"))
    conn.process_data_events(1)
    assert len(writes) == 1
    assert server.received() == [m.BasicPublish("", "replies", False, False), m.BasicAck(7, False)]
    server.script(frames(1, m.BasicCancelOk(rpc.consumer_tag)))
    rpc.stop()
    server.script(frames(0, m.ConnectionCloseOk()))
    conn.close()
