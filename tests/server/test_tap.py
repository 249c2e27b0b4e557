"""``twistd amqplike``: options, the service tree, and the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from amqplike.server import BrokerFactory
from amqplike.tap import DEFAULT_LISTEN, Options, makeService


def _options(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults(tmp_path: Path) -> None:
    """Without arguments the broker listens on loopback port 5680 with default limits."""
    options = _options()
    assert options["listen"] == [DEFAULT_LISTEN]
    assert options["data-dir"] == "./amqplike-data"
    limits = options.limits()
    assert (limits.heartbeat, limits.frame_max, limits.channel_max) == (60, 131072, 2047)


def test_listen_is_repeatable() -> None:
    """Each --listen adds an endpoint, replacing the default."""
    options = _options("--listen", "tcp:0", "--listen", "unix:/tmp/amqplike-test.sock")
    assert options["listen"] == ["tcp:0", "unix:/tmp/amqplike-test.sock"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heartbeat", "-1"], "--heartbeat must be from 0 to 65535"),
        (["--heartbeat", "soon"], "'soon' is not an integer"),
        (["--frame-max", "100"], "--frame-max must be from 4096"),
        (["--channel-max", "0"], "--channel-max must be from 1 to 65535"),
        (["--max-body-bytes", "-5"], "--max-body-bytes must be from 0"),
        (["--listen", "bogus:1234"], "--listen 'bogus:1234' is not a valid endpoint"),
        (["--listen", "tcp:notaport"], "--listen 'tcp:notaport' is not a valid endpoint"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: str) -> None:
    """Bad option values raise UsageError with a message naming the option."""
    with pytest.raises(usage.UsageError, match=message):
        _options(*argv)


def test_make_service_listens_and_stops_clean(tmp_path: Path) -> None:
    """makeService creates one listener per --listen and the data dir; stopping leaves no timers."""
    reactor = MemoryReactorClock()
    data_dir = tmp_path / "data" / "nested"
    options = _options(
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        "tcp:5999",
        "--data-dir",
        str(data_dir),
        "--heartbeat",
        "7",
    )
    service = makeService(options, reactor=reactor)
    listeners = [s for s in service if isinstance(s, StreamServerEndpointService)]
    assert len(listeners) == 2
    assert data_dir.is_dir()
    service.startService()
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [
        (0, "127.0.0.1"),
        (5999, ""),
    ]
    factory = reactor.tcpServers[0][1]
    assert isinstance(factory, BrokerFactory)
    assert factory.limits.heartbeat == 7
    service.stopService()
    assert reactor.getDelayedCalls() == []


def test_stop_closes_open_connections(tmp_path: Path) -> None:
    """Stopping the service sends connection.close 320 to connected clients and drops them."""
    from amqplike.wire.methods import ConnectionClose
    from tests.server._client import TestClient

    reactor = MemoryReactorClock()
    service = makeService(
        _options("--listen", "tcp:0", "--data-dir", str(tmp_path)), reactor=reactor
    )
    service.startService()
    factory = reactor.tcpServers[0][1]
    assert isinstance(factory, BrokerFactory)
    client = TestClient(factory)
    client.handshake()
    service.stopService()
    close = client.expect(ConnectionClose)
    assert close.reply_code == 320
    assert client.closed
    client.disconnect()
    assert reactor.getDelayedCalls() == []


def test_plugin_is_discovered() -> None:
    """twistd finds the amqplike plugin (twisted/plugins has no __init__.py)."""
    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins

    import twisted.plugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
    assert "amqplike" in makers
    assert makers["amqplike"].options is Options
    assert not (Path(__file__).parents[2] / "twisted" / "plugins" / "__init__.py").exists()
