"""``twistd amqplike``: options, the service tree, and the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from amqplike.server import BrokerFactory
from amqplike.tap import DEFAULT_BUSY_POLL_MICROSECONDS, DEFAULT_LISTEN, Options, makeService


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


def test_busy_poll_option() -> None:
    """--busy-poll is microseconds of polling after input; 0 turns it off."""
    assert _options().limits().busy_poll_seconds == DEFAULT_BUSY_POLL_MICROSECONDS / 1e6
    assert _options("--busy-poll", "0").limits().busy_poll_seconds == 0
    assert _options("--busy-poll", "500").limits().busy_poll_seconds == 0.0005


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
        (["--busy-poll", "-1"], "--busy-poll must be from 0 to 1000000"),
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


def test_store_is_loaded_before_the_listeners_bind(tmp_path: Path) -> None:
    """The store service comes first: twistd's privileged start loads it (rebuilding the
    core) before any listener binds its port, and it is closed last."""
    from amqplike.core import Broker
    from amqplike.services.persistence import PersistenceService

    options = _options("--listen", "tcp:0", "--data-dir", str(tmp_path))
    reactor = MemoryReactorClock()
    service = makeService(options, reactor=reactor)
    children = list(service)
    assert isinstance(children[0], PersistenceService)
    service.privilegedStartService()
    service.startService()
    factory = reactor.tcpServers[0][1]
    assert isinstance(factory.broker, Broker)
    factory.broker.connect().open_channel(1, _NullSink()).queue_declare("kept", durable=True)
    service.stopService()
    assert reactor.getDelayedCalls() == []

    reactor = MemoryReactorClock()
    service = makeService(options, reactor=reactor)
    seen = []
    store = next(iter(service))
    assert isinstance(store, PersistenceService)
    real_listen = reactor.listenTCP

    def listen(*args: object, **kwargs: object) -> object:
        seen.append(store.loaded is not None)
        return real_listen(*args, **kwargs)  # type: ignore[arg-type]

    reactor.listenTCP = listen  # type: ignore[method-assign]
    service.privilegedStartService()
    assert seen == [True]
    factory = reactor.tcpServers[0][1]
    assert "kept" in factory.broker.vhosts["/"].queues
    service.startService()
    service.stopService()


class _NullSink:
    def deliver(self, *args: object) -> None: ...
    def returned(self, *args: object) -> None: ...
    def confirmed(self, *args: object) -> None: ...
    def consumer_cancelled(self, *args: object) -> None: ...


def test_durability_options() -> None:
    """--sync, --disk-free-limit (with units) and --skip-corrupt, with usage errors."""
    options = _options()
    assert options["sync-interval"] is None
    assert options["disk-free-limit"] == 50_000_000
    assert not options["skip-corrupt"]
    options = _options("--sync", "interval:5", "--disk-free-limit", "1GiB", "--skip-corrupt")
    assert options["sync-interval"] == 0.005
    assert options["disk-free-limit"] == 1024**3
    assert options["skip-corrupt"]
    assert _options("--disk-free-limit", "0")["disk-free-limit"] == 0
    with pytest.raises(usage.UsageError, match="--sync must be 'full' or 'interval:MS'"):
        _options("--sync", "sometimes")
    with pytest.raises(usage.UsageError, match="is not a size"):
        _options("--disk-free-limit", "lots")


def test_store_fault_variable_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed AMQPLIKE_STORE_FAULTS is a usage error, not a surprise later."""
    monkeypatch.setenv("AMQPLIKE_STORE_FAULTS", "melt:/tmp/x")
    with pytest.raises(usage.UsageError, match="expected enospc:PATH or eio:PATH"):
        _options()
