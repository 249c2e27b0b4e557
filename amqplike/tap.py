"""``twistd amqplike``: command-line options and the service tree.

``makeService`` builds the broker core, one :class:`BrokerFactory`, the
deadline sweeper (TTL, queue expiry, delayed messages, retry hold-backs,
consumer ack timeouts) and one listening service per ``--listen`` endpoint
string (``tcp:5680``, ``ssl:5681:privateKey=...``, ``unix:/run/amqplike.sock``
...), as ``twistd web --listen`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.python import usage

from amqplike.core import Broker
from amqplike.server import BrokerFactory, ServerLimits
from amqplike.server._limits import DEFAULT_CHANNEL_MAX, DEFAULT_HEARTBEAT_SECONDS
from amqplike.services import DeadlineService
from amqplike.wire import DEFAULT_FRAME_MAX_BYTES, DEFAULT_MAX_BODY_BYTES, MIN_FRAME_MAX_BYTES

#: Where the broker listens when no ``--listen`` is given: loopback only.
DEFAULT_LISTEN: Final = "tcp:5680:interface=127.0.0.1"
DEFAULT_DATA_DIR: Final = "./amqplike-data"
#: RabbitMQ's default delivery acknowledgement timeout: 30 minutes.
DEFAULT_CONSUMER_TIMEOUT_MS: Final = 1_800_000

_LARGEST_LONG: Final = 0xFFFFFFFF
_LARGEST_SHORT: Final = 0xFFFF


def _integer(text: str) -> int:
    """Coerce an option value to an int, with a message that says what went wrong."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


_integer.coerceDoc = "An integer."  # type: ignore[attr-defined]


class Options(usage.Options):
    """Options of ``twistd amqplike``."""

    synopsis = "[options]"
    longdesc = (
        "An AMQP-style message broker.  Listens on "
        f"{DEFAULT_LISTEN} unless --listen is given (repeatable)."
    )

    optParameters = [
        [
            "data-dir",
            "d",
            DEFAULT_DATA_DIR,
            "Directory for the broker's data (created if missing).",
        ],
        [
            "heartbeat",
            None,
            DEFAULT_HEARTBEAT_SECONDS,
            "Heartbeat interval offered to clients, in seconds (0 disables).",
            _integer,
        ],
        [
            "frame-max",
            None,
            DEFAULT_FRAME_MAX_BYTES,
            f"Largest frame offered to clients, in bytes (at least {MIN_FRAME_MAX_BYTES}).",
            _integer,
        ],
        [
            "channel-max",
            None,
            DEFAULT_CHANNEL_MAX,
            "Most channels per connection (1 to 65535).",
            _integer,
        ],
        [
            "max-body-bytes",
            None,
            DEFAULT_MAX_BODY_BYTES,
            "Largest message body accepted, in bytes.",
            _integer,
        ],
        [
            "consumer-timeout",
            None,
            DEFAULT_CONSUMER_TIMEOUT_MS,
            "Delivery acknowledgement timeout in ms (0 disables); a channel holding a"
            " delivery longer is closed with 406. Queues and consumers may set"
            " x-consumer-timeout.",
            _integer,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted endpoint string (repeatable), e.g. tcp:5680:interface=127.0.0.1."""
        self["listen"].append(description)

    def postOptions(self) -> None:
        """Check every value; raise ``UsageError`` naming the bad option."""
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        for description in self["listen"]:
            _check_endpoint(description)
        _check_range("heartbeat", self["heartbeat"], 0, _LARGEST_SHORT)
        _check_range("frame-max", self["frame-max"], MIN_FRAME_MAX_BYTES, _LARGEST_LONG)
        _check_range("channel-max", self["channel-max"], 1, _LARGEST_SHORT)
        _check_range("max-body-bytes", self["max-body-bytes"], 0, 2**63 - 1)
        _check_range("consumer-timeout", self["consumer-timeout"], 0, 2**63 - 1)
        if not self["data-dir"]:
            raise usage.UsageError("--data-dir must not be empty")

    def limits(self) -> ServerLimits:
        """The server limits these options ask for."""
        return ServerLimits(
            frame_max=self["frame-max"],
            channel_max=self["channel-max"],
            heartbeat=self["heartbeat"],
            max_body_bytes=self["max-body-bytes"],
        )


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise usage.UsageError(f"--{name} must be from {low} to {high}, got {value}")


def _check_endpoint(description: str) -> None:
    """Parse an endpoint string without a reactor, so a typo is a usage error, not a traceback."""
    try:
        endpoints.serverFromString(_NO_REACTOR, description)
    except (ValueError, KeyError, TypeError) as e:
        raise usage.UsageError(f"--listen {description!r} is not a valid endpoint: {e}") from None


#: Endpoint constructors only keep the reactor; parsing never calls it.
_NO_REACTOR: Final = object()


class _CloseConnections(Service):
    """On shutdown, after the listeners stopped, close every client connection with 320."""

    def __init__(self, factory: BrokerFactory) -> None:
        self._factory = factory

    def stopService(self) -> None:
        """Send ``connection.close`` 320 to every client and drop the sockets."""
        super().stopService()
        self._factory.close_all(drop=True)
        self._factory.stopFactory()


def makeService(options: Options, reactor: Any = None) -> MultiService:
    """Build the broker's service tree: deadline sweeper, connection closer, then one
    listener per endpoint.

    ``MultiService`` stops children in reverse order, so the listeners stop
    accepting before the open connections are closed, and the sweeper stops last.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    Path(options["data-dir"]).mkdir(parents=True, exist_ok=True)
    broker = Broker(consumer_timeout=options["consumer-timeout"] / 1000)
    factory = BrokerFactory(broker, reactor, options.limits())
    root = MultiService()
    sweeper: IService = DeadlineService(broker, reactor, factory)
    sweeper.setName("deadlines")
    sweeper.setServiceParent(root)
    closer: IService = _CloseConnections(factory)
    closer.setServiceParent(root)
    for description in options["listen"]:
        endpoint = endpoints.serverFromString(reactor, description)
        listener = StreamServerEndpointService(endpoint, factory)
        listener.setName(description)
        listener.setServiceParent(root)
    return root
