"""``twistd amqplike``: command-line options and the service tree.

``makeService`` builds the broker core, one :class:`BrokerFactory`, the
durable store (loaded before anything listens), the deadline sweeper (TTL,
queue expiry, delayed messages, retry hold-backs, consumer ack timeouts)
and one listening service per ``--listen`` endpoint string (``tcp:5680``,
``ssl:5681:privateKey=...``, ``unix:/run/amqplike.sock`` ...), as ``twistd
web --listen`` does.

Process exit status: 0 after SIGTERM or SIGINT (a clean shut-down: the
store is closed and marked clean); :data:`EXIT_STORE_FAILED` (74) after a
fatal store error; :data:`EXIT_STORE_UNUSABLE` (65) when the store cannot
be opened (damaged, locked by another broker, not ours).
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, Final

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from amqplike.core import Broker
from amqplike.server import BrokerFactory, ServerLimits
from amqplike.server._limits import DEFAULT_CHANNEL_MAX, DEFAULT_HEARTBEAT_SECONDS
from amqplike.services import DeadlineService
from amqplike.services._faults import FAULTS_VARIABLE, faulty_connect, parse_faults
from amqplike.services.persistence import (
    DEFAULT_DISK_FREE_LIMIT_BYTES,
    DEFAULT_FLOW_HIGH_BYTES,
    EXIT_STORE_FAILED,
    EXIT_STORE_UNUSABLE,
    PersistenceService,
)
from amqplike.store import SQLiteStore, Store, StoreListener, call_now
from amqplike.wire import DEFAULT_FRAME_MAX_BYTES, DEFAULT_MAX_BODY_BYTES, MIN_FRAME_MAX_BYTES

__all__ = [
    "EXIT_STORE_FAILED",
    "EXIT_STORE_UNUSABLE",
    "Options",
    "makeService",
]

_log = Logger()

#: The GIL switch interval of the broker process.  The store's writer thread shares the
#: GIL with the reactor and hands it over several times per commit; Python's default
#: (5 ms) makes each hand-off wait up to that long.  0.5 ms: +10-15 % confirmed publishes.
SWITCH_INTERVAL_SECONDS: Final = 0.0005

#: Allocations between young-generation collections.  Every message allocates a few
#: short-lived objects; at Python's default (700) the collector runs every couple of
#: hundred messages and rescans the survivors.  With this threshold, and the recovered
#: state frozen out of the collector once the reactor runs, publishing costs 10-17 %
#: less broker CPU (amqplike-bench publish, 100 B: 8.2-8.9 -> 6.6-7.4 us/msg).
GC_GEN0_THRESHOLD: Final = 100_000

#: Where the broker listens when no ``--listen`` is given: loopback only.
DEFAULT_LISTEN: Final = "tcp:5680:interface=127.0.0.1"
DEFAULT_DATA_DIR: Final = "./amqplike-data"
#: RabbitMQ's default delivery acknowledgement timeout: 30 minutes.
DEFAULT_CONSUMER_TIMEOUT_MS: Final = 1_800_000



def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


#: How long the reactor keeps polling after input (``--busy-poll``, microseconds).  A
#: sequential request-reply round trip on 2 vCPUs: 200 us took it from ~4,000 to
#: ~5,500 calls/s (p50 240 -> 170 us); a spinning broker on a single CPU would only
#: take time from its clients, so there the default is 0.
DEFAULT_BUSY_POLL_MICROSECONDS: Final = 200 if _usable_cpus() >= 2 else 0

_LARGEST_LONG: Final = 0xFFFFFFFF
_LARGEST_SHORT: Final = 0xFFFF


def _integer(text: str) -> int:
    """Coerce an option value to an int, with a message that says what went wrong."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


_integer.coerceDoc = "An integer."  # type: ignore[attr-defined]

_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE: Final = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


def _size(text: str) -> int:
    """A byte count: a number with an optional unit (kB, MB, GB, KiB, MiB, GiB), as RabbitMQ."""
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (a number of bytes, or with kB/MB/GB/MiB/GiB)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


_size.coerceDoc = "Bytes, or with a unit: 50MB, 1GiB."  # type: ignore[attr-defined]


def _sync_interval(text: str) -> float | None:
    """``--sync``: ``full`` (None: fsync every commit) or ``interval:MS`` (seconds)."""
    if text == "full":
        return None
    kind, _, ms = text.partition(":")
    if kind != "interval" or not ms.isdigit() or int(ms) <= 0:
        raise ValueError(f"--sync must be 'full' or 'interval:MS' with MS > 0, got {text!r}")
    return int(ms) / 1000


_sync_interval.coerceDoc = "full (default) or interval:MS."  # type: ignore[attr-defined]


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
        [
            "busy-poll",
            None,
            DEFAULT_BUSY_POLL_MICROSECONDS,
            "Keep polling the sockets, not sleeping, this many microseconds after each"
            " batch of input (0 disables): answers that follow soon (request-reply,"
            " acks) are read without a wake-up, for at most that much CPU after the"
            " last input. Default 200, or 0 when the broker may run on one CPU only.",
            _integer,
        ],
        [
            "sync",
            None,
            "full",
            "full: a publisher confirm means the message was fsynced (the default);"
            " interval:MS: commit at most every MS ms without fsync; then a confirmed"
            " message survives a broker crash but NOT an OS crash or power cut.",
        ],
        [
            "disk-free-limit",
            None,
            DEFAULT_DISK_FREE_LIMIT_BYTES,
            "Block publishers (connection.blocked) while the data directory's file system"
            " has less free space than this (0 disables); e.g. 50MB, 1GiB.",
            _size,
        ],
        [
            "publisher-flow-limit",
            None,
            DEFAULT_FLOW_HIGH_BYTES,
            "Stop reading from publishing connections while more than this much published"
            " data waits for the disk (resume below half of it; 0 disables); e.g. 64MiB.",
            _size,
        ],
    ]

    optFlags = [
        [
            "skip-corrupt",
            None,
            "Start even if the store is damaged: salvage what is readable (the damaged file"
            " is kept beside it) and drop messages that cannot be read.",
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
        _check_range("publisher-flow-limit", self["publisher-flow-limit"], 0, 2**63 - 1)
        _check_range("busy-poll", self["busy-poll"], 0, 1_000_000)
        if not self["data-dir"]:
            raise usage.UsageError("--data-dir must not be empty")
        try:
            self["sync-interval"] = _sync_interval(self["sync"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        _check_range("disk-free-limit", self["disk-free-limit"], 0, 2**63 - 1)
        faults = os.environ.get(FAULTS_VARIABLE)
        if faults:
            try:
                parse_faults(faults)
            except ValueError as e:
                raise usage.UsageError(str(e)) from None

    def limits(self) -> ServerLimits:
        """The server limits these options ask for."""
        return ServerLimits(
            frame_max=self["frame-max"],
            channel_max=self["channel-max"],
            heartbeat=self["heartbeat"],
            max_body_bytes=self["max-body-bytes"],
            busy_poll_seconds=self["busy-poll"] / 1_000_000,
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


class _ProcessExit:
    """How the process ends: exit status 0 on SIGTERM/SIGINT, non-zero on a fatal store error.

    twistd re-raises the signal that stopped the reactor after it returns
    (the process then dies "killed by SIGTERM"); an operator's SIGTERM is a
    clean shut-down, so we handle it ourselves and exit 0.  A fatal store
    error stops the reactor (services stop, the store is closed) and then
    ends the process with the error's status.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.code = 0

    def install_signal_handlers(self) -> None:
        """Replace the reactor's SIGTERM/SIGINT handlers (call once the reactor runs)."""
        signal.signal(signal.SIGTERM, self._signalled)
        signal.signal(signal.SIGINT, self._signalled)

    def _signalled(self, number: int, frame: FrameType | None) -> None:
        _log.info("Received {signal}, shutting down.", signal=signal.Signals(number).name)
        self._reactor.callFromThread(self._reactor.stop)

    def fail(self, code: int) -> None:
        """Stop the reactor, then exit with ``code`` once the services have stopped."""
        if self.code:
            return
        self.code = code
        self._reactor.addSystemEventTrigger("after", "shutdown", self._exit)
        self._reactor.callFromThread(self._reactor.stop)

    def _exit(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(self.code)


def _store_opener(options: Options, reactor: Any) -> Any:
    """The function that builds the store with its listener, from the options."""
    data_dir = options["data-dir"]
    kwargs: dict[str, Any] = {
        # A reactor without threads (the tests' MemoryReactor): the writer
        # thread calls the listener itself.
        "dispatch": getattr(reactor, "callFromThread", call_now),
        "sync_interval_seconds": options["sync-interval"],
        "skip_corrupt": options["skip-corrupt"],
    }
    faults = os.environ.get(FAULTS_VARIABLE)
    if faults:
        kwargs["connect"] = faulty_connect(faults)

    def open_store(listener: StoreListener) -> Store:
        return SQLiteStore.in_directory(data_dir, listener, **kwargs)

    return open_store


def makeService(options: Options, reactor: Any = None) -> MultiService:
    """Build the broker's service tree: store, deadline sweeper, connection closer, then
    one listener per endpoint.

    ``MultiService`` starts children in order and stops them in reverse: the
    store is loaded (and the core rebuilt from it) before any port is bound,
    the listeners stop accepting before the open connections are closed, and
    the store is closed last, marking a clean shut-down.  With ``reactor``
    None this is the real process: the global reactor, the signal handling
    of :class:`_ProcessExit` and :data:`SWITCH_INTERVAL_SECONDS`.
    """
    process = None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
        process = _ProcessExit(reactor)
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        gc.set_threshold(GC_GEN0_THRESHOLD, 50, 1000)
        # By the time the reactor runs, the store has been loaded (privilegedStartService):
        # what exists now lives long, so the collector need not walk it again.
        reactor.callWhenRunning(gc.freeze)
        reactor.callWhenRunning(process.install_signal_handlers)
    data_dir = options["data-dir"]
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    broker = Broker(consumer_timeout=options["consumer-timeout"] / 1000)
    factory = BrokerFactory(broker, reactor, options.limits())
    root = MultiService()
    persistence = PersistenceService(
        broker,
        _store_opener(options, reactor),
        reactor,
        notifier=factory,
        on_fatal=process.fail if process is not None else None,
        data_dir=data_dir,
        disk_free_limit=options["disk-free-limit"],
        describe=os.path.join(data_dir, "amqplike.sqlite3"),
        flow_high_bytes=options["publisher-flow-limit"],
        flow_low_bytes=options["publisher-flow-limit"] // 2,
    )
    persistence.setName("store")
    persistence.setServiceParent(root)
    factory.busy_poll_paused = persistence.adapter.writing
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
